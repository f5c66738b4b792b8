"""Setup's templates: the unit file, gunicorn.conf.py and the logrotate rule, rendered."""

from __future__ import annotations

import asyncio
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks import config
from tasks.build import tags
from tasks.core import errors, shell
from tasks.core.paths import layout
from tasks.host import facts as host_facts
from tasks.host import provision, service, units
from tests.unit.fake_tags import SERVER_313


def settings(tmp_path: Path, extra: str = "") -> config.Settings:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text(
        "APP_NAME=shop\nBIND=0.0.0.0:8123\nWORKERS=3\nWSGI_APP=shop.web:create_app()\n" + extra
    )
    return config.build("staging", tmp_path)


def test_unit_runs_gunicorn_through_current_unresolved(tmp_path: Path) -> None:
    unit = units.render_unit(settings(tmp_path), "deploy", "deploy")
    lines = unit.splitlines()
    assert "Type=forking" in lines
    assert "PIDFile=/run/shop/gunicorn.pid" in lines
    assert "RuntimeDirectory=shop" in lines and "RuntimeDirectoryMode=0755" in lines
    assert "User=deploy" in lines and "Group=deploy" in lines
    assert "WorkingDirectory=/srv/shop/current" in lines
    assert "EnvironmentFile=-/etc/shop/env" in lines  # root's (docs/security.md#ownership)
    assert "Restart=on-failure" in lines
    assert (
        "ExecStart=/srv/shop/current/.venv/bin/python -m gunicorn --daemon "
        '--config /etc/shop/gunicorn.conf.py "shop.web:create_app()"'
    ) in lines
    assert "WantedBy=multi-user.target" in lines
    assert "$" not in unit.replace("$$", "")  # nothing for systemd to expand


def test_systemd_quote_escapes_specifiers_and_spaces() -> None:
    assert units.systemd_quote("/srv/app/current") == "/srv/app/current"
    assert units.systemd_quote("100%") == "100%%"
    assert units.systemd_quote("$HOME") == "$$HOME"
    assert units.systemd_quote('a b"c') == '"a b\\"c"'


def test_unit_follows_deploy_root_and_escapes_percent(tmp_path: Path) -> None:
    unit = units.render_unit(settings(tmp_path, "DEPLOY_ROOT=/opt/my%app\n"), "web", "www")
    assert "WorkingDirectory=/opt/my%%app/current" in unit
    assert "User=web" in unit and "Group=www" in unit


def test_gunicorn_conf_is_valid_python_with_the_settings(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    text = units.render_gunicorn_conf(settings(tmp_path))
    monkeypatch.delenv("FABDEPLOY_CHDIR", raising=False)
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(text)
    values = runpy.run_path(str(conf))
    assert values["bind"] == "0.0.0.0:8123"
    assert values["workers"] == 3
    assert values["pidfile"] == "/run/shop/gunicorn.pid"
    assert values["chdir"] == "/srv/shop/current"
    assert values["errorlog"] == "/srv/shop/shared/log/error.log"
    assert values["accesslog"] == "/srv/shop/shared/log/access.log"
    assert values["capture_output"] is True
    assert values["control_socket_disable"] is True
    assert values["raw_env"] == []  # /etc/shop/env is not readable here
    monkeypatch.setenv("FABDEPLOY_CHDIR", "/srv/shop/releases/x")
    assert runpy.run_path(str(conf))["chdir"] == "/srv/shop/releases/x"


def test_gunicorn_conf_reads_the_env_file_setup_writes(tmp_path: Path) -> None:
    nasty = 'say "hi"; $(id) `x` \\back $HOME'
    secrets = config.Secrets(None, {"GREETING": nasty, "EMPTY": "", "PLAIN": "x=y"})
    env_file = tmp_path / ".env"
    env_file.write_text(secrets.render())
    text = units.render_gunicorn_conf(settings(tmp_path)).replace(
        "'/etc/shop/env'", repr(str(env_file))
    )
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(text)
    raw_env = runpy.run_path(str(conf))["raw_env"]
    assert sorted(raw_env) == sorted([f"GREETING={nasty}", "EMPTY=", "PLAIN=x=y"])


def test_pre_exec_reexecs_python_dash_m_from_current(tmp_path: Path) -> None:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(units.render_gunicorn_conf(settings(tmp_path)))
    pre_exec = runpy.run_path(str(conf))["pre_exec"]
    main = "/srv/shop/current/.venv/lib/python3.11/site-packages/gunicorn/__main__.py"
    server = SimpleNamespace(
        START_CTX={
            0: "/srv/shop/current/.venv/bin/python",
            "args": ["/srv/shop/current/.venv/bin/python", main, "--daemon", "app:app"],
            "cwd": "/srv/shop/releases/old",
        }
    )
    pre_exec(server)
    assert server.START_CTX["args"] == [
        "/srv/shop/current/.venv/bin/python",
        "-m",
        "gunicorn",
        "--daemon",
        "app:app",
    ]
    assert server.START_CTX["cwd"] == "/srv/shop/current"


def test_logrotate_rotates_shared_log_as_the_app_user(tmp_path: Path) -> None:
    rule = units.render_logrotate(settings(tmp_path), "deploy", "deploy")
    assert '"/srv/shop/shared/log/*.log" {' in rule
    assert "su deploy deploy" in rule
    assert "copytruncate" in rule


def test_templates_ship_with_the_package() -> None:
    names = {p.name for p in units.TEMPLATES.iterdir()}
    assert {"app.service.in", "gunicorn.conf.py.in", "logrotate.in"} <= names


class FakeHost:
    """A `Host` stand-in: answers scripts from a queue, records what it was asked."""

    def __init__(self, answers: list[str], settings: config.Settings) -> None:
        self.answers = list(answers)
        self.settings = settings
        self.name = "web1"
        self.conn = SimpleNamespace(user="deploy")
        self.app_user = "shop"
        self.said: list[str] = []
        self.scripts: list[tuple[str, dict]] = []

    def script(self, body: str, **kw):  # type: ignore[no-untyped-def]
        self.scripts.append((body, kw.get("env") or {}))
        return SimpleNamespace(stdout=self.answers.pop(0), failed=False)

    def say(self, text: str) -> None:
        self.said.append(text)

    @property
    def app_is_deploy_user(self) -> bool:
        return self.app_user == self.conn.user


def test_items_report_changed_or_no_change(tmp_path: Path) -> None:
    host = FakeHost(["no change\nPython 3.11.2\n", "changed\ndeploy\n"], settings(tmp_path))
    assert provision.system_packages(host).changed is False  # type: ignore[arg-type]
    change, group = provision.app_user(host)  # type: ignore[arg-type]
    assert change.changed and group == "deploy"
    assert host.said == [
        "packages (python3, venv): no change (Python 3.11.2)",
        "user shop: changed (the app's own; deploy deploys)",
    ]
    assert host.scripts[0][1] == {"PYTHON": "python3"}


def test_the_app_running_as_the_ssh_user_is_warned_about(tmp_path: Path) -> None:
    host = FakeHost(["no change\ndeploy\n"], settings(tmp_path, "APP_USER=deploy\n"))
    host.app_user = "deploy"  # APP_USER set to the SSH user: the explicit opt-in
    change, _ = provision.app_user(host)  # type: ignore[arg-type]
    assert change.detail == (
        "WARNING: the app runs as the SSH user deploy, who has sudo: a compromised app is root "
        "on the host (docs/security.md#ownership)"
    )
    host.app_user = "shop"
    assert provision.deploy_user_warning(host) == ""  # type: ignore[arg-type]


def test_check_names_the_app_user_and_warns_about_the_ssh_user(tmp_path: Path) -> None:
    from tasks.steps import checks

    host = FakeHost([], settings(tmp_path))
    own = checks.app_user_finding(host)  # type: ignore[arg-type]
    assert own.line() == "ok      app user: shop, a user of its own (deploy deploys)"
    host.app_user = "deploy"
    warned = checks.app_user_finding(host)  # type: ignore[arg-type]
    assert warned.ok and warned.warning  # said, not blocking: the opt-in is allowed
    assert warned.line().startswith("WARNING app user: the app runs as the SSH user deploy")


def test_check_parses_the_hosts_python_and_current(tmp_path: Path) -> None:
    answer = (
        "Python 3.11.2 (main) [GCC 12.2.0] \nlinux-x86_64\n3.11\n"
        f"tags={SERVER_313.to_json()}\ncurrent=20261124T080000.000Z\n"
    )
    host = FakeHost([answer], settings(tmp_path))
    facts = host_facts.read_facts(host)  # type: ignore[arg-type]
    assert facts.python == "Python 3.11.2 (main) [GCC 12.2.0] linux-x86_64"
    assert facts.python_version == "3.11"
    assert facts.current == "20261124T080000.000Z"
    assert facts.tags == SERVER_313
    # the tags are learned in the same script, by the host's Python running host_tags.py
    body, env = host.scripts[0]
    assert '"$PYTHON" -c "$FACTS_PY" "$HOST_TAGS"' in body  # one Python start: facts.py
    assert env["HOST_TAGS"] == tags.SCRIPT.read_text()


def test_facts_py_says_what_python_vv_says_and_the_tags(tmp_path: Path) -> None:
    """The identity is part of the venv's key: facts.py must print exactly `python -VV`."""
    _, env = host_facts.facts_program(FakeHost([], settings(tmp_path)))  # type: ignore[arg-type]
    out = subprocess.run(
        [sys.executable, "-c", str(env["FACTS_PY"]), str(env["HOST_TAGS"])],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    vv = subprocess.run([sys.executable, "-VV"], capture_output=True, text=True, check=True)
    assert out[0] == vv.stdout.strip().replace("\n", " ")
    assert out[2] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert tags.parse(out[3].removeprefix("tags=")) == tags.local()


def test_check_without_the_tags_names_the_python(tmp_path: Path) -> None:
    answer = "Python 3.11.2 \nlinux-x86_64\n3.11\ntags=\ncurrent=\n"
    with pytest.raises(errors.HostError, match="cannot learn the wheel tags of python3"):
        host_facts.read_facts(FakeHost([answer], settings(tmp_path)))  # type: ignore[arg-type]


def test_user_refuses_a_bad_name(tmp_path: Path) -> None:
    host = FakeHost([], settings(tmp_path))
    host.app_user = "bad name; rm -rf /"
    with pytest.raises(errors.HostError, match="not a valid user name"):
        provision.app_user(host)  # type: ignore[arg-type]
    assert host.scripts == []


def test_gunicorn_conf_carries_the_worker_settings(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("FABDEPLOY_CHDIR", raising=False)
    defaults = runpy.run_path(str(_conf(tmp_path, units.render_gunicorn_conf(settings(tmp_path)))))
    assert (defaults["worker_class"], defaults["threads"], defaults["timeout"]) == ("sync", 1, 30)
    assert (defaults["max_requests"], defaults["max_requests_jitter"]) == (0, 0)
    chosen = settings(
        tmp_path,
        "WORKER_CLASS=uvicorn_worker.UvicornWorker\nTHREADS=4\nWORKER_TIMEOUT=90\n"
        "MAX_REQUESTS=1000\nMAX_REQUESTS_JITTER=50\n",
    )
    values = runpy.run_path(str(_conf(tmp_path, units.render_gunicorn_conf(chosen))))
    assert values["worker_class"] == "uvicorn_worker.UvicornWorker"
    assert (values["threads"], values["timeout"]) == (4, 90)
    assert (values["max_requests"], values["max_requests_jitter"]) == (1000, 50)


def test_the_apps_own_gunicorn_settings_apply_but_not_over_the_switchs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = tmp_path / "release"
    (release / "deploy").mkdir(parents=True)
    (release / "deploy" / "gunicorn_extra.py").write_text(
        "keepalive = 7\nworkers = 99\nbind = '0.0.0.0:1'\n"
        "def post_fork(server, worker):\n    pass\n"
    )
    monkeypatch.setenv("FABDEPLOY_CHDIR", str(release))  # what the smoke check sets
    text = units.render_gunicorn_conf(
        settings(tmp_path, "GUNICORN_CONFIG=deploy/gunicorn_extra.py\n")
    )
    values = runpy.run_path(str(_conf(tmp_path, text)))
    assert values["keepalive"] == 7 and callable(values["post_fork"])
    assert (values["workers"], values["bind"]) == (3, "0.0.0.0:8123")  # the switch's own
    assert values["chdir"] == str(release) and callable(values["pre_exec"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("WORKER_CLASS=uvicorn worker", "expected one of gunicorn's worker classes"),
        ("WORKER_CLASS=$(id)", "expected one of gunicorn's worker classes"),
        ("GUNICORN_CONFIG=../outside.py", "relative to the app's directory"),
        ("GUNICORN_CONFIG=/etc/gunicorn.py", "relative to the app's directory"),
        ("MAX_REQUESTS=-1", "whole number >= 0"),
        ("THREADS=0", "whole number >= 1"),
    ],
)
def test_bad_worker_settings_name_the_file_line_and_key(
    tmp_path: Path, line: str, message: str
) -> None:
    key = line.split("=", 1)[0]
    with pytest.raises(errors.ConfigError, match=rf"staging\.env:5: {key}: .*{re.escape(message)}"):
        settings(tmp_path, line + "\n")


def _conf(tmp_path: Path, text: str) -> Path:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(text)
    return conf


def run_facts(
    tmp_path: Path, python: Path, set_up: bool = True
) -> subprocess.CompletedProcess[str]:
    """scripts/facts.sh as the check sends it, run here with bash (HOME in tmp_path); with
    ``set_up`` false, on a host where `fab setup` never ran (no directory, no file)."""
    conf = settings(tmp_path, f"DEPLOY_ROOT={tmp_path / 'srv'}\nPYTHON={python}\n")
    body, env = host_facts.facts_program(FakeHost([], conf))  # type: ignore[arg-type]
    for key in ("RELEASES", "VENVS", "SHARED", "INCOMING"):
        if set_up:
            Path(str(env[key])).mkdir(parents=True, exist_ok=True)
    for key in ("UNIT", "CONF"):
        env[key] = tmp_path / f"{key}.file"
        if set_up:
            Path(str(env[key])).write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "sudo").write_text('#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n')
    (bin_dir / "sudo").chmod(0o755)
    home = {"HOME": str(tmp_path / "home"), "PATH": f"{bin_dir}:/usr/bin:/bin"}
    text = shell.bash_text(body, env)
    return subprocess.run(
        ["bash", "-c", text], capture_output=True, text=True, env=home, check=set_up
    )


def test_a_host_never_set_up_is_told_to_run_setup(tmp_path: Path) -> None:
    """Not that its missing .incoming "is not writable": the check names `fab setup`."""
    done = run_facts(tmp_path, Path(sys.executable), set_up=False)
    assert done.returncode == 3
    assert "not set up: missing" in done.stderr and "setup` first" in done.stderr
    assert ".incoming" in done.stderr and "not writable" not in done.stderr


def test_the_python_facts_are_cached_until_a_file_they_depend_on_changes(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\necho x >> {calls}\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    first = run_facts(tmp_path, python).stdout
    assert calls.read_text().count("x") == 1 and "files=" not in first
    assert run_facts(tmp_path, python).stdout == first  # from the cache: Python not started
    assert calls.read_text().count("x") == 1
    [cache] = (tmp_path / "home" / ".cache" / "fabdeploy").iterdir()
    watched = tmp_path / "libc.so.6"  # a file the answer depends on, as the C library is
    watched.write_text("v1")
    files, _, rest = cache.read_text().partition("\n")
    stamp = subprocess.run(
        ["stat", "-L", "-c", "%i:%s:%Y", *files.split(), str(watched)],
        capture_output=True, text=True, check=True,
    ).stdout.replace("\n", " ")  # fmt: skip
    cache.write_text(f"{files} {watched}\n{stamp}\n{rest.partition(chr(10))[2]}")
    assert run_facts(tmp_path, python).stdout == first and calls.read_text().count("x") == 1
    watched.write_text("v2, longer")  # the C library changed: ask the Python again
    assert run_facts(tmp_path, python).stdout == first
    assert calls.read_text().count("x") == 2


# --- the ready markers (docs/run.md#ready-workers) -----------------------------------------


def _hooks(tmp_path: Path, own: str = "") -> tuple[dict[str, object], Path, list[str]]:
    """gunicorn.conf.py's values for a deploy root in ``tmp_path`` (``own``: the app's own
    GUNICORN_CONFIG text), its pids dir, and the list the app's own hooks append to."""
    release = tmp_path / "release"
    release.mkdir()
    (release / "own.py").write_text(own)
    extra = f"DEPLOY_ROOT={tmp_path / 'srv'}\n" + ("GUNICORN_CONFIG=own.py\n" if own else "")
    chosen = settings(tmp_path, extra)
    pids = Path(layout(chosen).pids)  # /run/shop, under tmp_path (the `host_dirs` fixture)
    assert pids.is_relative_to(tmp_path)
    pids.mkdir(parents=True)
    text = units.render_gunicorn_conf(chosen)
    calls: list[str] = []
    values = runpy.run_path(
        str(_conf(tmp_path, text)), init_globals={"CALLS": calls}, run_name="conf"
    )
    return values, pids, calls


def _worker(pidfile: object, **more: object) -> SimpleNamespace:
    return SimpleNamespace(cfg=SimpleNamespace(pidfile=pidfile), pid=os.getpid(), **more)


def _own_marker() -> str:
    return (
        f"ready.{os.getpid()}.{Path('/proc/self/stat').read_text().rpartition(')')[2].split()[19]}"
    )


def test_each_worker_marks_itself_ready_beside_the_pidfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_dirs: Path
) -> None:
    monkeypatch.setenv("FABDEPLOY_CHDIR", str(tmp_path / "release"))
    values, pids, _ = _hooks(tmp_path)
    assert service.READY_HOOK in (tmp_path / "gunicorn.conf.py").read_text()
    values["post_worker_init"](_worker(values["pidfile"]))  # type: ignore[operator]
    assert [p.name for p in pids.iterdir()] == [_own_marker()]  # pid + start time, as /proc
    values["child_exit"](None, _worker(values["pidfile"]))  # type: ignore[operator]
    assert list(pids.iterdir()) == []  # the master removes an exited worker's marker


def test_the_master_takes_the_units_umask_back_then_runs_the_apps_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_dirs: Path
) -> None:
    monkeypatch.setenv("FABDEPLOY_CHDIR", str(tmp_path / "release"))
    own = "import os\ndef on_starting(server):\n    CALLS.append(oct(os.umask(0o22)))\n"
    values, _, calls = _hooks(tmp_path, own)
    was = os.umask(0o022)  # as gunicorn's --daemon leaves it
    try:
        values["on_starting"](None)  # type: ignore[operator]
        assert calls == ["0o27"]  # set before the app's own hook ran
    finally:
        os.umask(was)


def test_a_smoke_checks_gunicorn_writes_no_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_dirs: Path
) -> None:
    monkeypatch.setenv("FABDEPLOY_CHDIR", str(tmp_path / "release"))
    values, pids, _ = _hooks(tmp_path)
    values["post_worker_init"](_worker(str(tmp_path / "smoke.pid")))  # type: ignore[operator]
    assert list(pids.iterdir()) == []


def test_the_apps_own_worker_hooks_run_first_and_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_dirs: Path
) -> None:
    monkeypatch.setenv("FABDEPLOY_CHDIR", str(tmp_path / "release"))
    own = (
        "import os\n"
        "def post_worker_init(worker):\n"
        "    CALLS.append('own init: ' + ','.join(os.listdir(os.path.dirname(pidfile))))\n"
        "def child_exit(server, worker):\n"
        "    CALLS.append('own exit')\n"
    )
    values, pids, calls = _hooks(tmp_path, own)
    values["post_worker_init"](_worker(values["pidfile"]))  # type: ignore[operator]
    assert calls == ["own init: "]  # the app's hook ran before the marker was written
    assert [p.name for p in pids.iterdir()] == [_own_marker()]
    values["child_exit"](None, _worker(values["pidfile"]))  # type: ignore[operator]
    assert calls == ["own init: ", "own exit"] and list(pids.iterdir()) == []


def test_gunicorn_accepts_the_hooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_dirs: Path
) -> None:
    from gunicorn.config import Config

    monkeypatch.setenv("FABDEPLOY_CHDIR", str(tmp_path / "release"))
    values, _, _ = _hooks(tmp_path, "def post_worker_init(worker):\n    pass\n")
    config_ = Config()
    config_.set("post_worker_init", values["post_worker_init"])  # gunicorn checks the arity
    config_.set("child_exit", values["child_exit"])


def test_uvicorns_worker_is_ready_once_its_server_listens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_dirs: Path
) -> None:
    monkeypatch.setenv("FABDEPLOY_CHDIR", str(tmp_path / "release"))
    values, pids, calls = _hooks(tmp_path)

    async def heartbeat() -> None:  # uvicorn calls it at its server's first tick, then often
        calls.append("heartbeat")

    server = SimpleNamespace(callback_notify=heartbeat)
    values["post_worker_init"](_worker(values["pidfile"], config=server))  # type: ignore[operator]
    assert list(pids.iterdir()) == []  # the app is loaded, but uvicorn does not listen yet
    asyncio.run(server.callback_notify())
    assert [p.name for p in pids.iterdir()] == [_own_marker()] and calls == ["heartbeat"]
    assert server.callback_notify is heartbeat  # later ticks: the heartbeat alone


def test_a_stopping_uvicorn_worker_answers_the_connections_it_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_dirs: Path
) -> None:
    """uvicorn closes a connection with no request read yet when it stops: the hook makes its
    server stop accepting, then wait (bounded) for such a request before uvicorn's shutdown."""
    monkeypatch.setenv("FABDEPLOY_CHDIR", str(tmp_path / "release"))
    values, _, calls = _hooks(tmp_path)
    values["_answer_accepted_connections"].__globals__["_FIRST_REQUEST_GRACE"] = 0.3  # type: ignore[attr-defined]

    class Server:  # uvicorn.server.Server's parts the hook uses
        def __init__(self, connections: list[SimpleNamespace]) -> None:
            self.servers = [SimpleNamespace(close=lambda: calls.append("stop accepting"))]
            self.server_state = SimpleNamespace(connections=connections)  # uvicorn: a set

        async def shutdown(self, sockets: object = None) -> None:
            connections = self.server_state.connections
            calls.append("shutdown: " + ",".join(str(c.cycle) for c in connections))

    monkeypatch.setitem(sys.modules, "uvicorn.server", SimpleNamespace(Server=Server))

    async def notify() -> None:
        pass

    for _ in range(2):  # a worker's hook runs once per process; twice wraps once
        config_ = SimpleNamespace(callback_notify=notify)
        values["post_worker_init"](_worker(values["pidfile"], config=config_))  # type: ignore[operator]

    async def request_arrives(connection: SimpleNamespace, after: float) -> None:
        await asyncio.sleep(after)
        connection.cycle = "GET /"

    async def stop(after: float | None) -> float:
        fresh, served = SimpleNamespace(cycle=None), SimpleNamespace(cycle="done")
        server = Server([fresh, served])
        began = time.monotonic()
        if after is None:
            await server.shutdown()
        else:
            await asyncio.gather(server.shutdown(), request_arrives(fresh, after))
        return time.monotonic() - began

    waited = asyncio.run(stop(0.05))
    assert calls == ["stop accepting", "shutdown: GET /,done"] and waited < 0.25
    calls.clear()
    waited = asyncio.run(stop(None))  # a connection that never sends: closed after the grace
    assert calls == ["stop accepting", "shutdown: None,done"] and 0.3 <= waited < 2


def test_setup_s_note_on_changed_files_fits_a_host_where_nothing_runs_yet() -> None:
    """On a fresh host nothing runs: the note is an if, and says what a first deploy does."""
    from types import SimpleNamespace

    said: list[str] = []
    settings = SimpleNamespace(environment="staging", deploy_root="/srv/shop", app_name="shop")
    host = SimpleNamespace(settings=settings, say=said.append)
    provision.running_keeps(host, [provision.Change("secrets /etc/shop/env", True)])  # type: ignore[arg-type]
    provision.running_keeps(host, [provision.Change("secrets /etc/shop/env", False)])  # type: ignore[arg-type]
    provision.running_keeps(host, [provision.Change("/etc/shop/gunicorn.conf.py", True)])  # type: ignore[arg-type]
    note = (
        "if the web service or its processes run already, they keep the old files until "
        "`fab staging deploy` applies them (gracefully, also when the revision did not change); "
        "a first deploy starts them with these"
    )
    assert said == [note, note]


# --- the ownership model's layout (scripts/setup-directories.sh), for real, as root ---------


def layout_script(tmp_path: Path, mode: str, keep_env: str = "yes") -> subprocess.CompletedProcess[str]:  # fmt: skip
    """setup-directories.sh as `provision.directories` sends it, for a root and an /etc/<app>
    under ``tmp_path`` (D: this user, root; A: nobody)."""
    chosen = settings(tmp_path, f"DEPLOY_ROOT={tmp_path / 'srv'}\nAPP_USER=nobody\n"
                      "LINKED_DIRS=media,instance/uploads\nSECRETS_FILE=\n")  # fmt: skip
    host = SimpleNamespace(settings=chosen, app_user="nobody", name="web1")
    env = provision._layout_env(host, "nogroup", mode)  # type: ignore[arg-type]
    env.update(ETC=tmp_path / "etc" / "shop", ENV_FILE=tmp_path / "etc" / "shop" / "env", KEEP_ENV=keep_env)  # fmt: skip
    (tmp_path / "etc").mkdir(exist_ok=True)
    text = shell.bash_text(shell.shell("setup-directories"), env)
    return subprocess.run(["bash", "-c", text], capture_output=True, text=True, check=False)


def owners_of(top: Path) -> dict[str, str]:
    """Every path under ``top`` (relative) -> ``owner:group mode`` (links not followed)."""
    found = subprocess.run(
        ["find", str(top), "-mindepth", "1", "-printf", "%P\t%u:%g %m\n"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return dict(line.split("\t") for line in found.splitlines())


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory other users may traverse (pytest's tmp_path is root's, 0700): the old app
    user reads its secrets through it, as it does on a host."""
    where = Path(tempfile.mkdtemp(prefix="fabdeploy-layout-", dir="/var/tmp"))
    where.chmod(0o755)
    try:
        yield where
    finally:
        shutil.rmtree(where)


@pytest.mark.skipif(os.geteuid() != 0, reason="hands paths to other users: needs root")
def test_a_fresh_layout_is_the_ownership_models(open_dir: Path) -> None:
    tmp_path = open_dir
    assert layout_script(tmp_path, "survey").stdout == ""  # nothing to migrate
    made = layout_script(tmp_path, "apply")
    assert made.returncode == 0 and made.stdout.startswith("changed\n"), made.stderr
    assert owners_of(tmp_path / "srv") == {
        "releases": "root:root 755", "venvs": "root:root 755", "shared": "root:root 755",
        "shared/log": "nobody:nogroup 750", ".incoming": "root:root 700", ".switch": "root:root 700",
    }  # fmt: skip
    assert owners_of(tmp_path / "etc") == {"shop": "root:nogroup 750"}
    assert subprocess.run(["stat", "-c", "%U:%G %a", str(tmp_path / "srv")], capture_output=True,
                          text=True, check=True).stdout == "root:nogroup 750\n"  # fmt: skip
    assert layout_script(tmp_path, "apply").stdout == "no change\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="hands paths to other users: needs root")
def test_an_older_layout_is_migrated_keeping_the_data_and_following_no_link(
    open_dir: Path,
) -> None:
    tmp_path = open_dir
    root = tmp_path / "srv"
    for folder in ("releases/R1", "venvs/v1", "shared/pids", "shared/log", "shared/media",
                   "shared/instance/uploads", ".incoming"):  # fmt: skip
        (root / folder).mkdir(parents=True)
    (root / "shared" / ".env").write_text('GREETING="hi"\n')
    (root / "shared" / ".env").chmod(0o600)
    (root / "shared" / "gunicorn.conf.py").write_text("workers = 2\n")
    (root / "shared" / "pids" / "gunicorn.pid").write_text("42\n")
    (root / "shared" / "__pycache__").mkdir()  # gunicorn compiled the old gunicorn.conf.py
    (root / "shared" / "__pycache__" / "gunicorn.conf.cpython-311.pyc").write_bytes(b"\0")
    (root / "shared" / "media" / "photo.jpg").write_bytes(b"\xff\xd8 jpeg")
    (root / "shared" / "media" / "planted").symlink_to("/etc/shadow")
    (root / "releases" / "R1" / ".env").symlink_to("../../shared/.env")
    (root / "current").symlink_to("releases/R1")
    subprocess.run(
        ["chown", "-R", "-h", "daemon:daemon", str(root)], check=True
    )  # the old app user's
    shadow = os.stat("/etc/shadow")
    survey = layout_script(tmp_path, "survey").stdout.splitlines()
    assert f"migrate={root}: daemon:daemon -> root:nogroup" in survey
    assert f"migrate={root}/shared/media: daemon:daemon -> nobody:nogroup" in survey
    assert f"migrate={root}/shared/.env: the secrets move to {tmp_path}/etc/shop/env" in survey
    assert layout_script(tmp_path, "apply").returncode == 0
    assert (tmp_path / "etc" / "shop" / "env").read_text() == 'GREETING="hi"\n'  # read as daemon
    assert owners_of(tmp_path / "etc")["shop/env"] == "root:nogroup 640"
    found = owners_of(root)
    assert {k: v for k, v in found.items() if not k.startswith("shared/")} == {
        "releases": "root:root 755", "releases/R1": "root:root 755", "releases/R1/.env": "root:root 777",
        "venvs": "root:root 755", "venvs/v1": "root:root 755", "current": "root:root 777",
        "shared": "root:root 755", ".incoming": "root:root 700", ".switch": "root:root 700",
    }  # fmt: skip
    assert {k: v for k, v in found.items() if k.startswith("shared/")} == {
        "shared/log": "nobody:nogroup 750",
        "shared/media": "nobody:nogroup 755",
        "shared/media/photo.jpg": "nobody:nogroup 644",
        "shared/media/planted": "nobody:nogroup 777",
        "shared/instance": "root:root 755",
        "shared/instance/uploads": "nobody:nogroup 755",
    }  # fmt: skip  (the leaves' modes: linked_paths.sh, as the app user)
    assert (root / "shared" / "media" / "photo.jpg").read_bytes() == b"\xff\xd8 jpeg"
    assert os.readlink(root / "releases" / "R1" / ".env") == f"{tmp_path}/etc/shop/env"
    assert os.stat("/etc/shadow") == shadow  # the planted link was handed over, not followed
    assert layout_script(tmp_path, "survey").stdout == ""
    assert layout_script(tmp_path, "apply").stdout == "no change\n"
