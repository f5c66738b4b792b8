"""One SSH connection per host per ``fab`` command, every task of the command sharing it.

``fab staging setup deploy`` and ``fab -H host staging setup deploy`` run two tasks (with -H,
Fabric calls each task once per host, a fresh Connection each time); the host's sshd must
log exactly one accepted login for the whole command. Counted as bench/deploy.py counts
connections: the "Accepted publickey" lines in the host's /var/log/sshd.log.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import fab_env, figure, missing_for_netns, stop_kit, systemd_kit
from tests.hostkit import TestHost
from tests.integration.apps import write_app

FAB = str(Path(sys.executable).with_name("fab"))


@dataclass
class Project:
    """A project deploying examples/app to one real-systemd host."""

    host: TestHost
    dir: Path

    @property
    def address(self) -> str:
        """The host as HOSTS and -H name it."""
        port = f":{self.host.port}" if self.host.port not in (0, 22) else ""
        return f"{self.host.user}@{self.host.address}{port}"

    def logins(self) -> int:
        """SSH logins the host's sshd accepted so far."""
        log = self.host.path("/var/log/sshd.log")
        return log.read_text(errors="replace").count("Accepted publickey")

    def fab(self, *args: str) -> int:
        """Run ``fab ARGS`` from the project (it must succeed); the logins it cost."""
        before = self.logins()
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
        return self.logins() - before


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A fresh bookworm host and a project whose staging environment is that host."""
    missing = missing_for_netns()
    if missing:
        pytest.skip(f"[hostkit] deploying needs root and network namespaces; missing: {missing}")
    kit = systemd_kit(tmp_path_factory.mktemp("connections"), "bookworm")
    try:
        host = kit.start(1)[0]
        site = Project(host, tmp_path_factory.mktemp("connections-project"))
        (site.dir / "fabfile.py").write_text("from tasks import ns\n")
        (site.dir / "config").mkdir()
        (site.dir / "config" / "staging.env").write_text(
            f"HOSTS={site.address}\nSSH_KEY={kit.client_key}\nKNOWN_HOSTS={kit.known_hosts}\n"
            "APP_NAME=hello\nAPP_DIR=app\nSECRETS_FILE=app/secrets.env\nBIND=0.0.0.0:8000\nWORKERS=1\n"
            "HEALTH_TIMEOUT=10\n"
        )
        write_app(site.dir / "app", "1.0.0")
        yield site
    finally:
        stop_kit(kit)


def test_setup_deploy_opens_one_connection_per_host(project: Project) -> None:
    logins = project.fab("staging", "setup", "deploy", "--skip-tests")
    figure(f"connections: fab staging setup deploy: {logins} SSH login(s) on 1 host")
    assert logins == 1


def test_setup_deploy_with_hosts_flag_opens_one_connection_per_host(project: Project) -> None:
    write_app(project.dir / "app", "1.0.1")  # a real deploy, not the no-op
    logins = project.fab("-H", project.address, "staging", "setup", "deploy", "--skip-tests")
    figure(f"connections: fab -H host staging setup deploy: {logins} SSH login(s) on 1 host")
    assert logins == 1
