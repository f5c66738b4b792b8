"""One `Host` per host string for a whole ``fab`` command (`tasks.ssh.session.Command`), closed at its
end, and the -H hosts of a fleet learnt from Fabric's program, without a network."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest
from fabric import Config, Connection
from invoke import Context

from tasks import config
from tasks.core import output
from tasks.ssh import host as ssh_host
from tasks.ssh import session


def settings(tmp_path: Path, extra: str = "") -> config.Settings:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text(f"APP_NAME=shop\nHOSTS=web1,web2\n{extra}")
    return config.build("staging", tmp_path)


class FakeConnection:
    """Stands in for a Fabric Connection: counts opens and closes; ``run`` waits on ``gate``."""

    host, port, user = "web1", 22, "deploy"

    def __init__(self) -> None:
        self.is_connected = False
        self.opened = self.closed = 0
        self.gate = threading.Event()
        self.started = threading.Event()

    def open(self) -> None:
        self.is_connected = True
        self.opened += 1

    def close(self) -> None:
        self.is_connected = False
        self.closed += 1

    def run(self, command: str, **kwargs: object) -> object:
        self.started.set()
        self.gate.wait(10)
        return type("R", (), {"failed": False})()


def test_every_task_of_a_command_gets_the_same_host(tmp_path: Path) -> None:
    c = Context(config=Config())
    first = session.hosts(c, settings(tmp_path))
    c.config.load_collection({"fabdeploy": {"environment": None}})  # what each task's call does
    again = session.hosts(c, settings(tmp_path), names=["web2", "web1", "web2"])
    assert [h.name for h in first] == ["web1", "web2"]
    assert [h.name for h in again] == ["web2", "web1"]  # duplicates once
    assert again[1] is first[0] and again[0] is first[1]
    assert session.command(c) is session.command(c)
    other = session.hosts(Context(config=Config()), settings(tmp_path))  # another command
    assert other[0] is not first[0]


def test_a_shared_host_stays_open_until_the_command_ends(tmp_path: Path) -> None:
    command = session.Command()
    c = Context(config=Config())
    host = command.host(c, "web1", settings(tmp_path), output.Output())
    conn = FakeConnection()
    host.conn = conn  # type: ignore[assignment]
    host.open()
    host.close()  # a task is done with it: the next task of the command reuses it
    host.open()
    assert (conn.opened, conn.closed, host.connections) == (1, 0, 1)
    command.close()  # the command ended (atexit)
    assert conn.closed == 1
    assert command.hosts == {}


def test_a_command_nothing_holds_any_more_closes_its_connections(tmp_path: Path) -> None:
    command = session.Command()
    host = command.host(Context(config=Config()), "web1", settings(tmp_path), output.Output())
    conn = FakeConnection()
    host.conn = conn  # type: ignore[assignment]
    host.open()
    del command
    gc.collect()
    assert conn.closed == 1


def test_closing_a_shared_host_ends_what_still_runs_on_it(tmp_path: Path) -> None:
    command = session.Command()
    host = command.host(Context(config=Config()), "web1", settings(tmp_path), output.Output())
    conn = FakeConnection()
    host.conn = conn  # type: ignore[assignment]
    stream = threading.Thread(target=host.run, args=("journalctl -f",), kwargs={"hide": True})
    stream.start()
    assert conn.started.wait(10)
    host.close()  # `logs -f` after Ctrl-C: the stream must end
    conn.gate.set()
    stream.join(10)
    assert conn.closed == 1


def test_an_unshared_host_closes_at_once(tmp_path: Path) -> None:
    conn = FakeConnection()
    host = ssh_host.Host(conn, settings(tmp_path), output.Output())  # type: ignore[arg-type]
    host.open()
    host.close()
    assert conn.closed == 1


def per_host_calls(tmp_path: Path, given: list[str]) -> list[list[str]]:
    """The hosts `session(fleet=True)` gives each call as Fabric makes them for -H ``given``,
    for two fleet tasks in one command (``fab -H ... check deploy``)."""
    cfg = Config()
    return [
        [h.name for h in session.session(Connection(name, config=cfg), fleet=True)[1]]
        for _task in ("check", "deploy")
        for name in given
    ]


def test_fleet_under_hosts_flag_runs_once_per_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings(tmp_path)
    monkeypatch.setenv("FABDEPLOY_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("FABDEPLOY_ENVIRONMENT", "staging")
    monkeypatch.setattr(session, "fab_hosts", lambda: ["web1", "web2", "web3"])
    calls = per_host_calls(tmp_path, ["web1", "web2", "web3"])
    everyone = ["web1", "web2", "web3"]
    assert calls == [everyone, [], [], everyone, [], []]


def test_fab_hosts_reads_fabrics_parsed_hosts_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from fabric import main

    assert session.fab_hosts() == []  # no fab command parsed here
    program = main.make_program()
    program.parse_core(["fab", "-H", "web1,deploy@web2:2222", "--list"])
    monkeypatch.setattr(main, "program", program)
    assert session.fab_hosts() == ["web1", "deploy@web2:2222"]
