"""One SSH connection per host per ``fab`` command, every task of the command sharing it.

``fab staging setup deploy`` and ``fab -H host staging setup deploy`` run two tasks (with -H,
Fabric calls each task once per host, a fresh Connection each time), ``fab -H a,b staging
setup check deploy`` three, two of them fleets; each host's sshd must log exactly one accepted
login for the whole command. Counted as bench/deploy.py counts
connections: the "Accepted publickey" lines in the host's /var/log/sshd.log.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
    HostFactory,
    fab_env,
    figure,
    missing_for_netns,
    stop_kit,
    systemd_kit,
)
from tests.hostkit import HostKit, TestHost
from tests.integration.apps import write_app

FAB = str(Path(sys.executable).with_name("fab"))


def address(host: TestHost) -> str:
    """The host as HOSTS and -H name it."""
    port = f":{host.port}" if host.port not in (0, 22) else ""
    return f"{host.user}@{host.address}{port}"


def logins(host: TestHost) -> int:
    """SSH logins the host's sshd accepted so far."""
    return host.path("/var/log/sshd.log").read_text(errors="replace").count("Accepted publickey")


@dataclass
class Project:
    """A project deploying examples/app to real-systemd hosts (its staging environment)."""

    hosts: list[TestHost]
    dir: Path

    @classmethod
    def make(cls, where: Path, hosts: list[TestHost], kit: HostKit) -> Project:
        """The project in ``where``, serving version 1.0.0."""
        (where / "fabfile.py").write_text("from tasks import ns\n")
        (where / "config").mkdir()
        (where / "config" / "staging.env").write_text(
            f"HOSTS={','.join(address(h) for h in hosts)}\n"
            f"SSH_KEY={kit.client_key}\nKNOWN_HOSTS={kit.known_hosts}\n"
            "APP_NAME=hello\nAPP_DIR=app\nSECRETS_FILE=app/secrets.env\nBIND=0.0.0.0:8000\n"
            "WORKERS=1\nHEALTH_TIMEOUT=10\n"
        )
        write_app(where / "app", "1.0.0")
        return cls(hosts, where)

    def fab(self, *args: str) -> list[int]:
        """Run ``fab ARGS`` from the project (it must succeed); the logins it cost each host."""
        before = [logins(h) for h in self.hosts]
        proc = subprocess.run(
            [FAB, *args],
            cwd=self.dir,
            env=fab_env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0, f"fab {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
        return [logins(h) - n for h, n in zip(self.hosts, before)]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A fresh bookworm host and a project whose staging environment is that host."""
    missing = missing_for_netns()
    if missing:
        pytest.skip(f"[hostkit] deploying needs root and network namespaces; missing: {missing}")
    kit = systemd_kit(tmp_path_factory.mktemp("connections"), "bookworm")
    try:
        hosts = kit.start(1)
        yield Project.make(tmp_path_factory.mktemp("connections-project"), hosts, kit)
    finally:
        stop_kit(kit)


def test_setup_deploy_opens_one_connection_per_host(project: Project) -> None:
    found = project.fab("staging", "setup", "deploy", "--skip-tests")
    figure(f"connections: fab staging setup deploy: {found} SSH login(s) per host")
    assert found == [1]


def test_setup_deploy_with_hosts_flag_opens_one_connection_per_host(project: Project) -> None:
    write_app(project.dir / "app", "1.0.1")  # a real deploy, not the no-op
    given = address(project.hosts[0])
    found = project.fab("-H", given, "staging", "setup", "deploy", "--skip-tests")
    figure(f"connections: fab -H host staging setup deploy: {found} SSH login(s) per host")
    assert found == [1]


def test_two_fleet_tasks_with_hosts_flag_share_one_connection_per_host(
    make_hosts: HostFactory, tmp_path: Path
) -> None:
    hosts = make_hosts(2, release="bookworm")
    site = Project.make(tmp_path, hosts, make_hosts.kit)
    given = ",".join(address(h) for h in hosts)
    found = site.fab("-H", given, "staging", "setup", "check", "deploy", "--skip-tests")
    figure(f"connections: fab -H a,b staging setup check deploy: {found} SSH login(s) per host")
    assert found == [1, 1]
    for host in hosts:  # check's fleet did not swallow deploy's: both hosts serve
        with urllib.request.urlopen(host.url(8000, "/"), timeout=10) as answer:
            assert json.loads(answer.read())["version"] == "1.0.0"
