"""The one fan-out (`fanout.each`): what each host's work returned or raised, in order
(`GroupResult`), and Ctrl-C, which always stops the command: never a host's result."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from invoke import Context

from tasks import check
from tasks.core.errors import HostError
from tasks.ssh import fanout, session
from tests.unit.test_lock import local_host


class Named:
    """A host that only has a name (and records whether Ctrl-C reached it)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stopped = False

    def interrupt(self) -> None:
        self.stopped = True


def test_each_returns_every_host_s_value_or_error_in_order() -> None:
    hosts = [Named("a"), Named("b"), Named("c")]

    def work(host: Named) -> str:
        if host.name == "b":
            raise HostError("b", "disk full")
        return host.name.upper()

    for limit in (1, 3):  # in this thread, and in parallel
        done = fanout.each(hosts, work, limit)
        assert list(done) == hosts
        assert [h.name for h in done.succeeded] == ["a", "c"] and done[hosts[0]] == "A"
        assert [h.name for h in done.failed] == ["b"]
        assert str(done.error("upload")).endswith("upload failed on 1 host(s): [b] disk full")


@pytest.mark.parametrize("limit", [1, 5])
def test_ctrl_c_on_one_host_stops_the_fan_out_and_is_never_a_result(limit: int) -> None:
    hosts = [Named("a"), Named("b")]
    ran: list[str] = []

    def work(host: Named) -> None:
        ran.append(host.name)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fanout.each(hosts[:1], work, limit)  # one host: the work runs in this thread
    with pytest.raises(KeyboardInterrupt):
        fanout.each(hosts, work, 1)  # one after the other: the next host never starts
    assert ran == ["a", "a"]


def test_ctrl_c_in_parallel_stops_every_host_then_waits_for_their_work() -> None:
    hosts = [Named("a"), Named("b"), Named("c")]
    finished: list[str] = []

    def work(host: Named) -> None:
        if host.name == "b":
            raise KeyboardInterrupt
        if host.name == "c":
            time.sleep(0.3)
        finished.append(host.name)

    with pytest.raises(KeyboardInterrupt):
        fanout.each(hosts, work, 3, Named.interrupt)
    assert all(h.stopped for h in hosts)  # `Host.interrupt`: bounded commands end
    assert sorted(finished) == ["a", "c"]  # raised once the work still running ended


def test_ctrl_c_on_the_one_host_of_check_stops_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = local_host(tmp_path)
    monkeypatch.setattr(session, "session", lambda c, **kw: (host.settings, [host]))
    closed: list[str] = []
    monkeypatch.setattr(host, "close", lambda: closed.append(host.name))

    def interrupted(host: object) -> list[check.Finding]:
        raise KeyboardInterrupt

    monkeypatch.setattr(check, "on_host", interrupted)
    with pytest.raises(KeyboardInterrupt):
        check.check(Context())
    said = host.output.out.getvalue()  # type: ignore[attr-defined]
    assert "BLOCKS" not in said + capsys.readouterr().out  # not made a finding: stopped
    assert closed == ["web1"]  # the connection closed all the same
