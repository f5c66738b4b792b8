"""HEALTH_HOST: the Host header every health probe sends (lib.sh's ``probe``, status.py), its
validation, and the message a 400 gets (it names the header sent and the key)."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks import config
from tasks.core import shell
from tasks.core.errors import ConfigError
from tasks.host import service
from tasks.host import status as host_status

ALLOWED = "shop.example.com"


class StrictHosts(http.server.BaseHTTPRequestHandler):
    """Answers 200 only for Host: shop.example.com (any port), 400 otherwise; records Hosts."""

    seen: list[str] = []

    def do_GET(self) -> None:
        host = self.headers.get("Host", "")
        self.seen.append(host)
        self.send_response(200 if host.partition(":")[0] == ALLOWED else 400)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    """The URL of a `StrictHosts` server's /health, and the Host headers it got."""
    handler = type("Recorded", (StrictHosts,), {"seen": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/health", handler.seen
    finally:
        httpd.shutdown()


def probe(url: str, health_host: str | None) -> str:
    """lib.sh's ``probe URL`` run by bash, with HEALTH_HOST set (None: unset)."""
    env = {"PATH": "/usr/bin:/bin"} | (
        {"HEALTH_HOST": health_host} if health_host is not None else {}
    )
    body = shell.library() + '\nprobe "$1"\n'
    done = subprocess.run(["bash", "-c", body, "_", url], env=env, capture_output=True, text=True)
    return done.stdout.strip()


def test_probe_sends_the_urls_host_and_port_unless_health_host_is_set(server) -> None:  # type: ignore[no-untyped-def]
    url, seen = server
    hostport = url.removeprefix("http://").partition("/")[0]
    assert probe(url, None) == "400" and probe(url, "") == "400"
    assert probe(url, ALLOWED) == "200"
    assert probe(url, f"{ALLOWED}:443") == "200"
    assert seen == [hostport, hostport, ALLOWED, f"{ALLOWED}:443"]


def test_status_py_sends_health_host(server) -> None:  # type: ignore[no-untyped-def]
    url, seen = server
    port = url.rpartition(":")[2].partition("/")[0]
    code = shell.script_file("status.py")

    def status(*header: str) -> str:
        args = [sys.executable, "-c", code, "", "127.0.0.1", port, "/health", "0", "5", *header]
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout

    assert "health_status=400" in status()
    assert "health_status=400" in status("")
    assert "health_status=200" in status(ALLOWED)
    assert seen == [f"127.0.0.1:{port}", f"127.0.0.1:{port}", ALLOWED]


def settings_with(tmp_path: Path, extra: str = "") -> config.Settings:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\nHOSTS=web1\n" + extra)
    return config.build("staging", tmp_path)


def test_health_host_is_a_host_name_with_an_optional_port(tmp_path: Path) -> None:
    assert settings_with(tmp_path).health_host == ""
    for good in (ALLOWED, f"{ALLOWED}:8443", "10.0.0.5", "[::1]:8000", "localhost"):
        assert settings_with(tmp_path, f"HEALTH_HOST={good}\n").health_host == good
    for bad in ("shop example", "a;b", "$(id)", "http://shop", "shop/", "shop:port", "-x"):
        with pytest.raises(ConfigError, match="HEALTH_HOST"):
            settings_with(tmp_path, f"HEALTH_HOST={bad}\n")


def test_every_probe_is_given_health_host(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, f"HEALTH_HOST={ALLOWED}\n")
    assert service.health_env(settings)["HEALTH_HOST"] == ALLOWED  # smoke and switch
    assert service.host_header(settings, "http://127.0.0.1:8000/health") == ALLOWED
    plain = settings_with(tmp_path)
    assert service.host_header(plain, "http://127.0.0.1:8000/health") == "127.0.0.1:8000"


def test_a_400_says_the_host_header_may_be_why_and_names_the_key(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    why = service.refused_host(settings, 400, "127.0.0.1:8000")
    assert "Host header (127.0.0.1:8000)" in why and "ALLOWED_HOSTS" in why
    assert f"set HEALTH_HOST in {settings.source}" in why
    assert service.refused_host(settings, 503, "127.0.0.1:8000") == ""
    assert service.refused_host(settings, "200", "127.0.0.1:8000") == ""
    switched = "switch failed: health check http://127.0.0.1:8000/health answered 400\n"
    assert service.refused_in(settings, switched, "x") == service.refused_host(settings, 400, "x")
    assert service.refused_in(settings, "health check http://h/health answered 503", "x") == ""


def test_fab_health_and_status_explain_a_400(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, "BIND=0.0.0.0:8000\n")
    sick = host_status.Status("web1", state="active", release="R", health_status=400)
    fine = host_status.Status("web2", state="active", release="R", health_status=200)
    assert "Host header (127.0.0.1:8000)" in host_status.refused(settings, [fine, sick])
    assert host_status.refused(settings, [fine]) == ""
