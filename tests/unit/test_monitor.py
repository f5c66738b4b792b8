"""The monitor stage without SSH: parsing what hosts report, tables, and the remote scripts
themselves run with the local bash against a deploy root in a temp dir."""

from __future__ import annotations

import _thread
import base64
import io
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from invoke import Context
from invoke.runners import Result

from tasks import config, monitor
from tasks.core import kv, report
from tasks.core import output as core_output
from tasks.core.errors import FabdeployError
from tasks.core.paths import Layout, layout
from tasks.core.records import Audit, Revision
from tasks.host import history, logs, resources, service, status
from tasks.ssh import fanout, session
from tasks.ssh import host as ssh_host

# --- helpers ---------------------------------------------------------------------------------


def make_settings(tmp_path: Path, extra: str = "") -> config.Settings:
    (tmp_path / "config").mkdir(exist_ok=True)
    root = tmp_path / "srv" / "hello"
    (tmp_path / "config" / "staging.env").write_text(
        f"APP_NAME=hello\nHOSTS=web1\nDEPLOY_ROOT={root}\nPYTHON={sys.executable}\n{extra}"
    )
    return config.build("staging", tmp_path)


class LocalConnection:
    """Stands in for a Fabric Connection: runs the command with the local bash."""

    port = 22
    user = "deploy"
    is_connected = True

    def __init__(self, host: str = "web1") -> None:
        self.host = host

    def run(self, command: str, **kwargs: object) -> Result:
        given = kwargs.get("in_stream")  # Host.run's stdin, or False
        proc = subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            input=given.read() if given else "",  # type: ignore[attr-defined]
        )
        return Result(
            stdout=proc.stdout, stderr=proc.stderr, exited=proc.returncode, command=command
        )

    def close(self) -> None:
        pass


def local_hosts(settings: config.Settings, out: io.StringIO, *names: str) -> list[ssh_host.Host]:
    output = core_output.Output(out, out)
    return [ssh_host.Host(LocalConnection(n), settings, output) for n in names or ("web1",)]  # type: ignore[arg-type]


@pytest.fixture
def fake_sudo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_dirs: Path) -> Path:
    """A `sudo` and a `systemctl` on PATH: systemctl answers from a file, journalctl prints two lines; ``-u
    <user>`` (as_app: the app user is APP_NAME) runs the command as this user. /etc/<app>
    and /run/<app> are under tmp_path (`host_dirs`)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state = tmp_path / "state"
    state.write_text("active\n")
    (bin_dir / "sudo").write_text(
        textwrap.dedent(
            f"""\
            #!/bin/bash
            [ "$1" = -n ] && shift
            if [ "$1" = -u ]; then shift 2; [ "$1" != -- ] || shift; fi
            case "$1" in
              systemctl) cat {state}; [ "$(cat {state})" = active ] ;;
              journalctl) echo "Nov 24 08:00:00 web1 systemd[1]: Started hello.service."
                          echo "journal args: ${{*:2}}" ;;
              *) exec "$@" ;;
            esac
            """
        )
    )
    (bin_dir / "sudo").chmod(0o755)
    # status.sh asks `systemctl is-active` as the SSH user (no root needed): the same answer
    (bin_dir / "systemctl").write_text(f'#!/bin/bash\ncat {state}; [ "$(cat {state})" = active ]\n')
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return state


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


APP = textwrap.dedent(
    """\
    import http.server, signal, subprocess, sys
    child = subprocess.Popen(["sleep", "30"])
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"ok")
        def log_message(self, *a):
            pass
    server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
    print("ready", flush=True)
    try:
        server.serve_forever()
    finally:
        child.kill()
    """
)


def deployed(settings: config.Settings, releases: int = 2) -> Layout:
    """A deploy root as the deploy stage leaves it: releases, REVISION, current, audit log."""
    paths = layout(settings)
    names = [f"20261124T0{i}0000.000Z" for i in range(releases)]
    for i, name in enumerate(names):
        Path(paths.release(name)).mkdir(parents=True)
        Path(paths.release(name), "REVISION").write_text(
            Revision(f"{i}abc{i}" * 8, name, "ann@laptop", f"2026-11-24T0{i}:00:00Z").format()
        )
    Path(paths.logs).mkdir(parents=True)
    Path(paths.pids).mkdir(parents=True)
    os.symlink(f"releases/{names[-1]}", paths.current)
    with open(paths.revisions_log, "w") as log:
        for i, name in enumerate(names):
            log.write(
                Audit(
                    f"2026-11-24T0{i}:00:00Z", "deploy", name, f"rev{i}", "ann@laptop", "ok"
                ).format()
                + "\n"
            )
    return paths


# --- tables and small formats ----------------------------------------------------------------


def test_table_aligns_columns_and_right_aligns_numbers() -> None:
    text = report.table(
        ("HOST", "STATE", "PID"),
        [("web1", "active", 1234), ("web-long-2", "in  active\n", None), ("w3",)],
        right="PID",
    )
    assert text.splitlines() == [
        "HOST        STATE       PID",
        "web1        active     1234",
        "web-long-2  in active",
        "w3",
    ]


def test_table_has_no_trailing_blanks() -> None:
    text = report.table(("A", "B"), [("x", "")])
    assert all(line == line.rstrip() for line in text.splitlines())


def test_parse_pairs_keeps_key_value_lines_only() -> None:
    text = "state=active\nnoise line\n=x\nrelease=r1=2\nbad key=1\n"
    assert kv.parse(text) == {"state": "active", "release": "r1=2"}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (5, "5s"), (65, "1m05s"), (3725, "1h02m"), (90061, "1d01h")],
)
def test_human_duration(seconds: float | None, text: str) -> None:
    assert report.human_duration(seconds) == text


def test_human_sizes_and_revisions() -> None:
    assert report.human_kib(512) == "512K"
    assert report.human_kib(49459) == "48.3M"
    assert report.human_kib(4 * 1024 * 1024) == "4.0G"
    assert report.short_revision("0123456789abcdef0123") == "0123456789ab"
    assert report.short_revision("v1.2-not-a-hash-at-all") == "v1.2-not-a-hash-at-all"


@pytest.mark.parametrize(
    ("bind", "target"),
    [
        ("0.0.0.0:8000", "127.0.0.1"),
        ("127.0.0.1:8000", "127.0.0.1"),
        ("10.0.0.5:80", "10.0.0.5"),
        ("[::]:8000", "127.0.0.1"),
        ("[::1]:8000", "::1"),
    ],
)
def test_probe_goes_to_loopback_for_wildcard_binds(bind: str, target: str) -> None:
    assert service.probe_address(bind) == target


# --- status parsing ------------------------------------------------------------------------


def revision_b64(rev: Revision) -> str:
    return base64.b64encode(rev.format().encode()).decode()


REV = Revision("0123456789abcdef0123456789abcdef01234567", "20261124T081500.000Z", "ann@lap", "T1")

ACTIVE = f"""\
state=active
release=20261124T081500.000Z
revision_file={revision_b64(REV)}
pid=4242
pid_alive=yes
workers=2
rss_kb=98304
uptime=3725
cpu=1.5
health_status=200
health_ms=3.4
"""


def test_status_parses_an_active_host() -> None:
    s = status.Status.parse("web1", ACTIVE)
    assert s.state == "active" and s.release == "20261124T081500.000Z"
    assert s.revision == REV
    assert (s.pid, s.pid_alive, s.workers, s.rss_kb, s.cpu) == (4242, True, 2, 98304, 1.5)
    assert s.health_status == 200 and s.health_ms == 3.4
    assert s.healthy and s.problems() == []
    row = s.row()
    assert row == [
        "web1",
        "active",
        "20261124T081500.000Z",
        "0123456789ab",
        "ann@lap",
        "T1",
        "4242",
        "1h02m",
        2,
        "96.0M",
        "1.5%",
        "HTTP 200 3 ms",
    ]
    assert status.health_line(s) == (
        "healthy: HTTP 200 in 3 ms, release 20261124T081500.000Z (0123456789ab)"
    )


def test_status_of_a_stopped_host_names_every_problem() -> None:
    text = (
        "state=inactive\nrelease=r1\npid=4242\npid_alive=no\n"
        "health_error=[Errno 111] Connection refused\nhealth_ms=0.3\n"
    )
    s = status.Status.parse("web2", text)
    assert not s.healthy
    assert s.problems() == [
        "service inactive",
        "gunicorn pid 4242 from the pidfile is not running",
        "health check [Errno 111] Connection refused",
    ]
    row = s.row()
    assert row[1] == "inactive" and row[6] == "4242 (dead)" and row[7] == "" and row[9] == ""
    assert status.health_line(s).startswith("UNHEALTHY: service inactive; gunicorn pid")


def test_status_keeps_a_sudo_failure_as_detail_not_state() -> None:
    s = status.Status.parse("web3", "state=sudo: a password is required\nhealth_status=200\n")
    assert s.state == "unknown"
    assert s.problems()[0] == "service unknown (sudo: a password is required)"
    assert "no current release" in s.problems()


def test_status_health_status_other_than_2xx_is_unhealthy() -> None:
    s = status.Status.parse("web1", ACTIVE.replace("health_status=200", "health_status=503"))
    assert s.problems() == ["health check HTTP 503"]


def test_status_health_is_200_only() -> None:
    """The one rule of health (service.healthy, docs/scripts.md): a 2xx other than 200 is not."""
    for code in ("204", "302"):
        s = status.Status.parse(
            "web1", ACTIVE.replace("health_status=200", f"health_status={code}")
        )
        assert s.problems() == [f"health check HTTP {code}"] and not s.healthy


def test_status_tolerates_a_garbled_revision_file() -> None:
    s = status.Status.parse("web1", "state=active\nrevision_file=!!!notbase64\n")
    assert s.revision is None


def test_unreachable_host_is_a_row() -> None:
    reply = fanout.Reply("web9", error="cannot connect on port 22: refused", unreachable=True)
    s = status.Status.from_reply(reply)
    assert s.row() == ["web9", "unreachable"]
    assert s.problems() == ["unreachable: cannot connect on port 22: refused"]
    text = status.render_status([status.Status.parse("web1", ACTIVE), s])
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["HOST", "STATE", "RELEASE"]
    assert lines[2].split() == ["web9", "unreachable"]


# --- resources and releases parsing ----------------------------------------------------------


def test_resources_row() -> None:
    text = (
        "load=0.10 0.20 0.30\ncpus=2\nmem_total_kb=4194304\nmem_available_kb=3145728\n"
        "disk_path=/srv/hello\ndisk_total_kb=10485760\ndisk_free_kb=5242880\nreleases=3\n"
        "current=r3\n"
    )
    r = resources.Resources.parse("web1", text)
    assert r.row() == ["web1", "0.10 0.20 0.30", 2, "1.0G/4.0G (25%)", "5.0G of 10.0G", 3, "r3"]
    rendered = resources.render_resources([r])
    assert "RELEASES" in rendered.splitlines()[0]


def audit_lines(*rows: tuple[str, str, str]) -> str:
    return "".join(
        "audit " + Audit(f"T{i}", action, release, f"rev{i}", "ann", result).format() + "\n"
        for i, (action, release, result) in enumerate(rows)
    )


def test_history_is_newest_first_and_marks_current() -> None:
    text = "current=r2\nlog=yes\n" + audit_lines(
        ("deploy", "r1", "ok"),
        ("deploy", "r2", "ok"),
        ("deploy", "r3", "failed"),
        ("rollback", "r2", "ok"),
    )
    h = history.History.parse("web1", text + "audit garbage line\n")
    assert [a.release for a in h.entries] == ["r2", "r3", "r2", "r1"]
    rows = h.rows()
    assert [r[1] for r in rows] == ["*", "", "", ""]
    assert rows[0][2:5] == ["r2", "rollback", "ok"]
    assert [a.release for a in history.History.parse("web1", text, limit=2).entries] == [
        "r2",
        "r3",
    ]


def test_history_without_a_log() -> None:
    h = history.History.parse("web1", "")
    assert h.rows() == [["web1", "", "(no deploys recorded)"]]


def test_releases_table_has_host_column() -> None:
    a = history.History.parse("web1", "current=r1\nlog=yes\n" + audit_lines(("deploy", "r1", "ok")))
    b = history.History.from_reply(fanout.Reply("web2", error="boom"))
    lines = history.render_releases([a, b]).splitlines()
    assert lines[0].split() == ["HOST", "RELEASE", "ACTION", "RESULT", "REVISION", "BY", "TIME"]
    assert lines[1].split()[:3] == ["web1", "*", "r1"]
    assert lines[2].split() == ["web2", "error"]


# --- options -------------------------------------------------------------------------------


def test_task_options_have_help_and_short_flags() -> None:
    args = {a.name: a for a in monitor.logs.get_arguments()}
    assert args["lines"].names == ("lines", "n") and args["lines"].default == 50
    assert args["follow"].names == ("follow", "f")
    assert all(a.help for a in args.values())
    limit, as_json = monitor.releases.get_arguments()
    assert limit.names == ("limit", "n") and limit.help
    assert as_json.names == ("json", "j") and as_json.help


def test_fab_help_describes_every_option(tmp_path: Path) -> None:
    make_settings(tmp_path)
    (tmp_path / "fabfile.py").write_text("from tasks import ns\n")
    repo = Path(__file__).resolve().parents[2]
    fab = str(Path(sys.executable).with_name("fab"))
    env = {**os.environ, "PYTHONPATH": str(repo)}
    out = subprocess.run(
        [fab, "--help", "logs"], cwd=tmp_path, env=env, capture_output=True, text=True
    ).stdout
    assert "-n INT, --lines=INT" in out and "-f, --follow" in out and "Ctrl-C" in out


# --- the remote scripts, run with the local bash ---------------------------------------------


def test_status_script_reads_the_pidfile_proc_and_probes_health(
    tmp_path: Path, fake_sudo: Path
) -> None:
    port = free_port()
    settings = make_settings(tmp_path, f"BIND=0.0.0.0:{port}\n")
    paths = deployed(settings)
    app = subprocess.Popen(
        [sys.executable, "-c", APP, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert app.stdout is not None and app.stdout.readline() == "ready\n"
        time.sleep(0.2)  # the worker (sleep) is running
        Path(paths.pidfile).write_text(f"{app.pid}\n")
        (s,) = status.gather_status(local_hosts(settings, io.StringIO()), settings, sample=True)
    finally:
        app.terminate()  # the app then ends its worker
        app.wait()
    assert s.error == ""
    assert s.state == "active" and s.release == "20261124T010000.000Z"
    assert s.revision is not None and s.revision.user == "ann@laptop"
    assert s.pid == app.pid and s.pid_alive is True and s.workers == 1
    assert s.rss_kb and s.rss_kb > 1000 and s.cpu is not None and s.uptime is not None
    assert s.health_status == 200 and s.health_ms is not None
    assert s.healthy


def test_status_script_on_a_stopped_host(tmp_path: Path, fake_sudo: Path) -> None:
    fake_sudo.write_text("inactive\n")
    settings = make_settings(tmp_path, f"BIND=127.0.0.1:{free_port()}\n")
    paths = deployed(settings)
    dead = subprocess.Popen(["true"])
    dead.wait()
    Path(paths.pidfile).write_text(f"{dead.pid}\n")
    (s,) = status.gather_status(local_hosts(settings, io.StringIO()), settings, sample=False)
    assert s.state == "inactive" and s.pid_alive is False
    assert s.health_status is None and "refused" in s.health_error.lower()


def test_health_task_names_the_unhealthy_host(
    tmp_path: Path, fake_sudo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_sudo.write_text("failed\n")
    settings = make_settings(tmp_path, f"BIND=127.0.0.1:{free_port()}\n")
    deployed(settings)
    out = io.StringIO()
    hosts = local_hosts(settings, out, "web1", "web2")
    monkeypatch.setattr(session, "session", lambda c, **kw: (settings, hosts))
    with pytest.raises(FabdeployError) as caught:
        monitor.health(Context())
    assert "2 of 2 hosts unhealthy: web1 (service failed" in str(caught.value)
    assert "web2 (service failed" in str(caught.value)
    assert "[web1] UNHEALTHY: service failed" in out.getvalue()


def test_resources_and_releases_scripts(
    tmp_path: Path, fake_sudo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    deployed(settings, releases=3)
    out = io.StringIO()
    hosts = local_hosts(settings, out)
    monkeypatch.setattr(session, "session", lambda c, **kw: (settings, hosts))
    monitor.resources(Context())
    header, row = out.getvalue().splitlines()
    assert header.startswith("HOST") and row.startswith("web1")
    assert row.split()[-2:] == ["3", "20261124T020000.000Z"]
    out.truncate(0)
    out.seek(0)
    monitor.releases(Context(), limit=2)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[1].split()[:4] == ["web1", "*", "20261124T020000.000Z", "deploy"]
    assert lines[2].split()[:3] == ["web1", "20261124T010000.000Z", "deploy"]


def test_logs_script_shows_journal_and_log_files(
    tmp_path: Path, fake_sudo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, "LOG_FILES=app-*.log, error.log\n")
    paths = deployed(settings)
    Path(paths.logs, "error.log").write_text("".join(f"error {i}\n" for i in range(10)))
    Path(paths.logs, "app-1.log").write_text("app one\n")
    Path(paths.logs, "access.log").write_text("not shown\n")
    out = io.StringIO()
    hosts = local_hosts(settings, out)
    monkeypatch.setattr(session, "session", lambda c, **kw: (settings, hosts))
    monitor.logs(Context(), lines=3)
    text = out.getvalue()
    assert "[web1] ==> journal of hello.service <==" in text
    assert "[web1] journal args: -u hello.service -n 3 --no-pager" in text
    assert "[web1] error 9" in text and "error 6" not in text
    assert f"[web1] ==> {paths.logs}/app-1.log <==" in text and "[web1] app one" in text
    assert "not shown" not in text
    assert all(line.startswith("[web1] ") for line in text.splitlines())


# --- following -------------------------------------------------------------------------------


class StreamingConnection(LocalConnection):
    """Writes one line, then blocks like `tail -F` until the connection is closed."""

    def __init__(self, host: str, fail: bool = False) -> None:
        super().__init__(host)
        self.fail = fail
        self.closed = threading.Event()
        self.commands: list[str] = []

    def run(self, command: str, **kwargs: object) -> Result:
        self.commands.append(command)
        if self.fail:
            raise OSError("connection reset")
        kwargs["out_stream"].write(f"first line from {self.host}\nhalf a ")  # type: ignore[attr-defined]
        self.closed.wait(10)
        return Result(stdout="", stderr="", exited=-1, command=command)

    def close(self) -> None:
        self.closed.set()


def follow_with_ctrl_c(settings: config.Settings, conns: list[StreamingConnection]) -> str:
    out = io.StringIO()
    output = core_output.Output(out, out)
    hosts = [ssh_host.Host(c, settings, output) for c in conns]  # type: ignore[arg-type]

    def interrupt_once_streaming() -> None:  # Ctrl-C when every stream has begun (or failed)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(c.commands for c in conns):
            time.sleep(0.01)
        time.sleep(0.2)
        _thread.interrupt_main()

    timer = threading.Timer(0.0, interrupt_once_streaming)
    timer.start()
    try:
        logs.follow_logs(hosts, 5)
    finally:
        timer.cancel()
        assert all(c.closed.is_set() or c.fail for c in conns)
    return out.getvalue()


def test_follow_streams_every_host_and_ends_quietly_on_ctrl_c(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    conns = [StreamingConnection("web1"), StreamingConnection("web2")]
    text = follow_with_ctrl_c(settings, conns)
    assert "[web1] first line from web1\n" in text and "[web2] first line from web2\n" in text
    assert "[web1] half a \n" in text  # the partial last line is flushed once, whole
    assert all("FOLLOW=yes" in c.commands[0] and "tail -n" in c.commands[0] for c in conns)


def test_follow_names_a_host_that_could_not_stream(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    conns = [StreamingConnection("web1"), StreamingConnection("web2", fail=True)]
    with pytest.raises(FabdeployError, match="1 of 2 hosts could not stream: web2"):
        follow_with_ctrl_c(settings, conns)


def test_status_shows_the_app_settings_the_host_holds_in_clear() -> None:
    text = 'DEBUG="0"\nSITE_ROOT="https://one.example"\n'
    encoded = base64.b64encode(text.encode()).decode()
    held = status.Status.parse("web1", f"state=active\nsettings_file={encoded}\n")
    empty = status.Status.parse("web2", "state=active\nsettings_file=\n")
    unread = status.Status.parse("web3", "state=active\n")
    assert held.settings == {"DEBUG": "0", "SITE_ROOT": "https://one.example"}
    assert (empty.settings, unread.settings) == ({}, None)
    assert status.settings_lines([held, empty, unread]) == [
        "settings web1: DEBUG=0 SITE_ROOT=https://one.example",
        "settings web2: none",
    ]
    assert held.to_json()["settings"] == {"DEBUG": "0", "SITE_ROOT": "https://one.example"}
