"""The run stage: health URLs, the shell helpers of the switch (run here with bash against a
local HTTP server), the scripts' syntax, and how switch reports."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks import config
from tasks.core import shell as core_shell
from tasks.core.errors import HostError
from tasks.host import service, status


def settings(tmp_path: Path, extra: str = "") -> config.Settings:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\n" + extra)
    return config.build("staging", tmp_path)


@pytest.mark.parametrize(
    ("bind", "url"),
    [
        ("0.0.0.0:8000", "http://127.0.0.1:8000/health"),
        ("127.0.0.1:9000", "http://127.0.0.1:9000/health"),
        ("10.0.0.5:80", "http://10.0.0.5:80/health"),
        ("[::]:8000", "http://127.0.0.1:8000/health"),
    ],
)
def test_health_url_is_seen_from_the_host(tmp_path: Path, bind: str, url: str) -> None:
    assert service.health_url(settings(tmp_path, f"BIND={bind}\n")) == url


@pytest.mark.parametrize(
    ("bind", "address", "url"),
    [
        ("0.0.0.0:8000", "127.0.0.1", "http://127.0.0.1:8000/health"),
        ("[::]:8000", "127.0.0.1", "http://127.0.0.1:8000/health"),
        ("*:8000", "127.0.0.1", "http://127.0.0.1:8000/health"),
        ("127.0.0.1:9000", "127.0.0.1", "http://127.0.0.1:9000/health"),
        ("10.0.0.5:80", "10.0.0.5", "http://10.0.0.5:80/health"),
        ("[::1]:8000", "::1", "http://[::1]:8000/health"),
        ("[fd00::5]:8000", "fd00::5", "http://[fd00::5]:8000/health"),
        ("web1.internal:8000", "web1.internal", "http://web1.internal:8000/health"),
    ],
)
def test_one_probe_address_for_every_probe(
    tmp_path: Path, bind: str, address: str, url: str
) -> None:
    """The switch and `fab health` (health_url), `fab status` (probe_address) and the Host
    header a refused probe names all connect to the same place."""
    s = settings(tmp_path, f"BIND={bind}\n")
    assert service.probe_address(bind) == address
    assert service.health_url(s) == url
    assert service.probe_netloc(s) == url.removeprefix("http://").partition("/")[0]
    assert service.health_url(s, 9999) == url.replace(f":{s.port}/", ":9999/")
    refused = status.refused(s, [status.Status("h", health_status=400)])
    assert f"Host header ({service.probe_netloc(s)})" in refused


def test_a_wildcard_ipv6_bind_answers_the_probe(tmp_path: Path) -> None:
    """BIND=[::] as gunicorn binds it (an IPv6 socket, v6only off, Linux's default): lib.sh's
    probe of health_url, which connects to 127.0.0.1, reaches it."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 sockets here")

    class Dual(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6

        def server_bind(self) -> None:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    httpd = Dual(("::", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        s = settings(tmp_path, f"BIND=[::]:{httpd.server_address[1]}\nHEALTH_PATH=/200\n")
        result = shell(f"probe {service.health_url(s)}\n", tmp_path)
        assert result.stdout.split() == ["200"], result.stderr
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    "script", [core_shell.shell(path.stem) for path in sorted(core_shell.SCRIPTS.glob("*.sh"))]
)
def test_scripts_are_valid_bash(script: str) -> None:
    result = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert result.returncode == 0, result.stderr


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = int(self.path.rsplit("/", 1)[-1])
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"x")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def shell(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: str(v) for k, v in service.health_env(settings(tmp_path)).items()}
    env["ANSWER_GRACE"] = "1"
    env["PATH"] = "/usr/bin:/bin"
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + core_shell.library() + body],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_probe_prints_the_status(server: str, tmp_path: Path) -> None:
    result = shell(
        f"probe {server}/200; probe {server}/503; probe http://127.0.0.1:1/x\n", tmp_path
    )
    assert result.stdout.split() == ["200", "503", "000"]


def test_wait_healthy_gives_up_early_on_a_wrong_answer(server: str, tmp_path: Path) -> None:
    result = shell(f"wait_healthy {server}/500 20 || echo gave-up\n", tmp_path)
    assert result.stdout.split() == ["500", "gave-up"]


def test_wait_healthy_stops_when_the_master_dies(tmp_path: Path) -> None:
    result = shell("wait_healthy http://127.0.0.1:1/ 20 999999999 || echo gave-up\n", tmp_path)
    assert "master 999999999 exited" in result.stdout and "gave-up" in result.stdout


def test_healthy_is_one_rule_in_bash_and_python(tmp_path: Path) -> None:
    codes = ["200", "201", "204", "302", "500", "000", ""]
    result = shell(
        "".join(f'if healthy "{c}"; then echo yes; else echo no; fi\n' for c in codes), tmp_path
    )
    assert result.stdout.split() == ["yes" if service.healthy(c) else "no" for c in codes]
    assert result.stdout.split() == ["yes"] + ["no"] * 6


def test_current_release_and_kv(tmp_path: Path) -> None:
    (tmp_path / "releases" / "R1").mkdir(parents=True)
    os.symlink("releases/R1", tmp_path / "current")
    result = shell(
        f'CURRENT={tmp_path}/current; kv target "$(current_target)"; kv current "$(current_release)"\n'
        f"CURRENT={tmp_path}/none; kv none \"$(current_release)\"; kv two $'a\\nb'\n",
        tmp_path,
    )
    assert result.stdout.splitlines() == ["target=releases/R1", "current=R1", "none=", "two=a b"]


def test_alive_knows_live_and_missing_processes(tmp_path: Path) -> None:
    result = shell(
        "alive $$ && echo yes; alive 999999999 || echo no; alive abc || echo bad\n", tmp_path
    )
    assert result.stdout.split() == ["yes", "no", "bad"]


class FakeHost:
    def __init__(self, tmp_path: Path, stdout: str, failed: bool) -> None:
        self.settings = settings(tmp_path)
        self.name = "web1"
        self.app_user = "deploy"
        self.result = SimpleNamespace(stdout=stdout, failed=failed)
        self.env: dict = {}

    def script(self, body: str, **kw):  # type: ignore[no-untyped-def]
        if kw["label"] == "current release":  # scripts/current.sh
            return SimpleNamespace(stdout="current=20261124T080000.000Z\n", failed=False)
        self.env = kw["env"]
        assert kw["warn"] is True
        return self.result


def test_switch_reports_what_it_did(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, "switched: master 1 -> 2, serving x: health 200\n", False)
    done = service.switch(host, "20261124T090000.000Z")  # type: ignore[arg-type]
    assert done == service.Switched("20261124T090000.000Z", "20261124T080000.000Z", False)
    assert host.env["NEW_TARGET"] == "releases/20261124T090000.000Z"
    assert host.env["PIDFILE"] == "/run/shop/gunicorn.pid"
    assert host.env["WORKERS"] == 2


def test_failed_switch_names_what_still_serves(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, "", True)
    with pytest.raises(HostError, match=r"still serving 20261124T080000\.000Z"):
        service.switch(host, "20261124T090000.000Z")  # type: ignore[arg-type]


def test_reload_switches_onto_current(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, "started shop.service (master 5)\n", False)
    done = service.switch(host, None)  # type: ignore[arg-type]
    assert host.env["NEW_TARGET"] == "" and done.started
    assert done.release == "20261124T080000.000Z"


def test_stage_modules_expose_their_functions() -> None:
    """The functions the steps compose, in the layer modules that own them now."""
    from tasks.build import archive, testrun
    from tasks.host import facts, install, provision, service, smoke

    for module, names in {
        provision: (
            "set_up",
            "system_packages",
            "app_user",
            "directories",
            "upload_secrets",
            "service_files",
        ),
        facts: ("read_facts",),
        archive: ("build", "venv_digest"),
        install: ("ship", "install", "remove_release"),  # install unpacks
        testrun: ("run_suite",),
        smoke: ("smoke",),
        service: ("switch", "start", "stop", "restart", "health", "master_pid", "current_release"),
    }.items():
        for name in names:
            assert callable(getattr(module, name)), f"{module.__name__}.{name}"


def detach(tmp_path: Path, body: str) -> subprocess.Popen[str]:
    """scripts/detach.sh run here with bash, as `Host.script` runs it on a host."""
    env = {"DIR": str(tmp_path), "ID": "run1", "WAIT": 5, "BODY": core_shell.bash_text(body)}
    return subprocess.Popen(
        ["bash", "-c", core_shell.bash_text(core_shell.shell("detach"), env)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_a_detached_run_is_followed_to_its_exit_status(tmp_path: Path) -> None:
    proc = detach(tmp_path, "echo one; sleep 0.3; echo two >&2; exit 3\n")
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 3 and out.split() == ["one", "two"]
    assert (tmp_path / "run1.rc").read_text().strip() == "3"


def test_a_detached_run_outlives_its_follower(tmp_path: Path) -> None:
    """Killing the follower (fab's SSH session gone) does not stop the run."""
    proc = detach(tmp_path, f"sleep 1; echo finished > {tmp_path}/done.txt\n")
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)  # the follower and everything in its session
    proc.wait(timeout=5)
    deadline = time.monotonic() + 10
    while not (tmp_path / "run1.rc").exists():
        assert time.monotonic() < deadline, "the detached run never ended"
        time.sleep(0.1)
    assert (tmp_path / "run1.rc").read_text().strip() == "0"
    assert (tmp_path / "done.txt").read_text() == "finished\n"
