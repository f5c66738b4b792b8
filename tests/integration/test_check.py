"""`fab check` against a real-systemd host (Debian 12 in systemd-nspawn): each blocker of a
deploy found on its own, one at a time, and named; nothing changed on the host; then every
check passing (exit 0, the JSON parsed) and a deploy starting.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import missing_for_netns, stop_kit, systemd_kit
from tests.integration.apps import write_app
from tests.integration.test_fleet import PORT, ROOT, Fleet, start_fleet


class One(Fleet):
    """One host, checked."""

    def app(self, version: str, *, marked_unhealthy: bool = False) -> None:
        write_app(self.project / "app", version)
        (self.project / "app" / "secrets.env").write_text("GREETING=hi\n")

    def blocks(self, *extra: str) -> list[str]:
        """Run `fab check`, expect it to fail; the checks that block, from its lines."""
        proc = self.fab("staging", "check", *extra, ok=False)
        assert "block a deploy" in proc.stderr or "blocks a deploy" in proc.stderr
        return [
            line.split("BLOCKS", 1)[1].split(":")[0].strip()
            for line in proc.stdout.splitlines()
            if "BLOCKS" in line
        ]

    def setting(self, line: str) -> None:
        """Set one key of the env file (the line that sets it replaced)."""
        env = self.project / "config" / "staging.env"
        key = line.split("=", 1)[0] + "="
        kept = [old for old in env.read_text().splitlines() if not old.startswith(key)]
        env.write_text("\n".join([*kept, line]) + "\n")


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[One]:
    missing = missing_for_netns()
    if missing:
        pytest.skip(f"[hostkit] needs root and network namespaces; missing: {missing}")
    kit = systemd_kit(tmp_path_factory.mktemp("check-hosts"), "bookworm")
    try:
        project = tmp_path_factory.mktemp("check-project")
        (project / "fabfile.py").write_text("from fabdeploy import ns  # noqa: F401\n")
        one = start_fleet(kit, project, One, count=1)
        one.app("1.0.0")
        yield one
    finally:
        stop_kit(kit)


def test_check_finds_each_blocker_one_at_a_time(one: One) -> None:
    (host,) = one.hosts
    env = one.project / "config" / "staging.env"
    settings = env.read_text()
    logins = host.path("/var/log/sshd.log").read_text().count("Accepted publickey")

    empty = one.project / "empty_known_hosts"
    empty.write_text("")
    one.setting(f"KNOWN_HOSTS={empty}")
    assert one.blocks() == ["ssh"]  # the host key is not known: nothing more is asked
    env.write_text(settings)

    one.setting("APP_DIR=no-such-dir")
    assert one.blocks()[:1] == ["APP_DIR"]  # local; the host is checked too (not set up)
    env.write_text(settings)

    assert one.blocks() == ["set up"]
    assert not host.path(ROOT).exists()  # check changed nothing
    assert host.path("/var/log/sshd.log").read_text().count("Accepted publickey") > logins
    one.fab("staging", "setup")

    host.sh(f"systemd-run --unit=squat python3 -m http.server {PORT}; sleep 1")
    try:
        found = one.fab("staging", "check", ok=False)
        assert "port: 0.0.0.0:8000 is taken by python3" in found.stdout, found.stdout
        assert one.blocks() == ["port"]
    finally:
        host.sh("systemctl stop squat")

    one.fab("staging", "lock", "--reason", "db migration")
    try:
        found = one.fab("staging", "check", ok=False)
        assert '"db migration"' in found.stdout
        assert one.blocks() == ["lock"]
    finally:
        one.fab("staging", "unlock")

    host.sh(
        f"cp -a {ROOT} /var/tmp/root-copy && mount -t tmpfs -o size=40m tmpfs {ROOT} && "
        f"cp -a /var/tmp/root-copy/. {ROOT}/"
    )
    try:
        assert one.blocks() == ["disk"]
    finally:
        host.sh(f"umount {ROOT} && rm -rf /var/tmp/root-copy")

    passed = one.fab("staging", "check", "--json")
    found = json.loads(passed.stdout)  # stdout is the document and nothing else
    assert [entry["host"] for entry in found] == ["local", host.address]
    assert all(entry["ok"] for entry in found)
    checks = {f["check"] for entry in found for f in entry["findings"]}
    assert {"APP_DIR", "git state", "ssh", "app user", "set up", "python", "disk", "port", "lock"} <= checks  # fmt: skip
    human = one.fab("staging", "check")
    assert f"[{host.address}] ok      port: 0.0.0.0:8000 is free" in human.stdout
    assert f"[{host.address}] ok      app user: hello, a user of its own (deploy deploys)" in human.stdout  # fmt: skip
    assert "check: a deploy would start on 1 host(s)" in human.stdout

    # the app run as the SSH user: the explicit opt-in, warned about, not blocking
    one.setting("APP_USER=deploy")
    try:
        warned = one.fab("staging", "check")
        assert (
            f"[{host.address}] WARNING app user: the app runs as the SSH user deploy, who has "
            "sudo: a compromised app is root on the host (docs/security.md#ownership)"
        ) in warned.stdout, warned.stdout
        [finding] = [
            f
            for entry in json.loads(one.fab("staging", "check", "--json").stdout)
            for f in entry["findings"]
            if f["check"] == "app user"
        ]
        assert finding["ok"] and finding["warning"]
    finally:
        env.write_text(settings)
    one.fab("staging", "deploy")
    held = one.fab("staging", "check")
    assert "is held by hello" in held.stdout  # the app's own service holds its port
