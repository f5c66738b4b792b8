"""HEALTH_HOST on a real-systemd host (Debian 12 in systemd-nspawn): an app that answers 400
unless the request's Host is shop.example.com (as Django does for a host not in
ALLOWED_HOSTS). Without HEALTH_HOST the deploy stops at the smoke check saying why a 400 may
come and naming the key; with it every probe (smoke, switch, `fab health`, `fab status`)
sends that Host and the deploy works; `fab health` with a name the app refuses says why."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import missing_for_netns, stop_kit, systemd_kit
from tests.integration.test_fleet import PORT, Fleet, start_fleet

ALLOWED = "shop.example.com"
#: Appended to the example app: 400 for any other Host, as Django's ALLOWED_HOSTS gives.
STRICT_HOSTS = f"""

from flask import request


@app.before_request
def allowed_hosts():  # type: ignore[no-untyped-def]
    if request.host.partition(":")[0] != "{ALLOWED}":
        return "Bad Request: invalid HTTP_HOST header", 400
    return None
"""


class Strict(Fleet):
    """One host; the app refuses any Host but `ALLOWED`."""

    def app(self, version: str, *, marked_unhealthy: bool = False) -> None:
        super().app(version)
        app = self.project / "app" / "app.py"
        app.write_text(app.read_text() + STRICT_HOSTS)

    def served_with(self, header: str) -> list[str]:
        """The version each host serves, asked with ``Host: header``."""
        versions = []
        for host in self.hosts:
            asked = urllib.request.Request(host.url(PORT, "/"), headers={"Host": header})
            with urllib.request.urlopen(asked, timeout=10) as answer:
                versions.append(json.loads(answer.read())["version"])
        return versions

    def health_host(self, value: str) -> None:
        """Set HEALTH_HOST in the environment file ("" removes it)."""
        env = self.project / "config" / "staging.env"
        lines = [
            line for line in env.read_text().splitlines() if not line.startswith("HEALTH_HOST=")
        ]
        env.write_text("\n".join([*lines, *([f"HEALTH_HOST={value}"] if value else [])]) + "\n")


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Strict]:
    missing = missing_for_netns()
    if missing:
        pytest.skip(f"[hostkit] real-systemd hosts need root and namespaces; missing: {missing}")
    kit = systemd_kit(tmp_path_factory.mktemp("strict-hosts"), "bookworm")
    try:
        project = tmp_path_factory.mktemp("strict-project")
        (project / "fabfile.py").write_text("from fabdeploy import ns  # noqa: F401\n")
        strict = start_fleet(kit, project, Strict, count=1)
        strict.app("1.0.0")
        strict.fab("staging", "setup")
        yield strict
    finally:
        stop_kit(kit)


def test_a_400_names_the_host_header_and_health_host_and_setting_it_deploys(
    strict: Strict,
) -> None:
    [host] = strict.hosts
    refused = strict.fab("staging", "deploy", ok=False)
    message = refused.stderr
    assert "smoke check of release" in message
    assert "HTTP 400 often means the app refused the probe's Host header (127.0.0.1:" in message
    assert "ALLOWED_HOSTS" in message and "set HEALTH_HOST in " in message
    assert not host.path("/srv/hello/current").exists()  # nothing served

    strict.health_host(ALLOWED)
    strict.fab("staging", "deploy")
    assert strict.served_with(ALLOWED) == ["1.0.0"]
    health = strict.fab("staging", "health")
    assert "healthy: HTTP 200" in health.stdout
    status = strict.fab("staging", "status")
    assert "HTTP 200" in status.stdout

    strict.health_host("other.example.com")
    try:
        sick = strict.fab("staging", "health", ok=False)
    finally:
        strict.health_host(ALLOWED)
    assert "health check HTTP 400" in sick.stderr
    assert "Host header (other.example.com)" in sick.stderr
    assert "set HEALTH_HOST in " in sick.stderr
