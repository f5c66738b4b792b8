"""Migrations on two real-systemd hosts (issue 19, items 4, 6 and 8), the app run as its own
user (APP_USER=web: every migration goes through ``sudo -u``, whose ``use_pty`` Debian sets).

The migration is ``python scripts/migrate.py``: a script in a subdirectory that imports the
app's own module (``app.py``), so it needs the release on PYTHONPATH; it logs where it ran to
shared/log/migrations.log. With a host-local database (``LINKED_FILES=app.sqlite3``) and no
MIGRATE_ON, check and deploy warn and only the primary migrates; with ``MIGRATE_ON=all`` every
host does. A migration that sleeps is interrupted by SIGINT to the fab process (the remote
sleep is gone when fab returns, the release removed, the lock released), killed with SIGKILL
(the remote sleep ends by itself, the release left behind is removed by the next cleanup
without counting as kept), and stopped by MIGRATE_TIMEOUT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import missing_for_netns, stop_kit, systemd_kit
from tests.hostkit import TestHost
from tests.integration.test_fleet import Fleet, start_fleet

#: The migration: imports the app's own module from scripts/, logs host, release, module.
MIGRATE_SCRIPT = """import pathlib, socket
import app  # the app's own module, in the release: needs the release on PYTHONPATH

line = f"{socket.gethostname()} {pathlib.Path.cwd().name} {pathlib.Path(app.__file__).parent.name}"
with open("../../shared/log/migrations.log", "a") as log:
    log.write(line + "\\n")
"""
BASE = "TEST_COMMAND=\nAPP_USER=web\nLINKED_FILES=app.sqlite3\n"
MIGRATE = "python scripts/migrate.py"


class Migrating(Fleet):
    def app(self, version: str, *, marked_unhealthy: bool = False) -> None:
        super().app(version, marked_unhealthy=marked_unhealthy)
        (self.project / "app" / "scripts").mkdir()
        (self.project / "app" / "scripts" / "migrate.py").write_text(MIGRATE_SCRIPT)

    def settings(self, extra: str = "", command: str = MIGRATE) -> None:
        """The env file: the fleet's lines, then `BASE`, MIGRATE_COMMAND and ``extra``."""
        path = self.project / "config" / "staging.env"
        head = path.read_text().partition("TEST_COMMAND=\n")[0]
        path.write_text(f"{head}{BASE}MIGRATE_COMMAND={command}\n{extra}")

    def env_text(self) -> str:
        return (self.project / "config" / "staging.env").read_text()

    def sleeping(self, host: TestHost, seconds: int) -> list[str]:
        """The processes on ``host`` running ``sleep <seconds>``."""
        found = host.sh(f"pgrep -a -f '^sleep {seconds}$' || true").stdout
        return found.split("\n") if found.strip() else []

    def releases_now(self) -> list[list[str]]:
        return [self.releases(h) for h in self.hosts]

    def start(self, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
        """``fab`` started in the background; its output lines collected as they come."""
        proc = self.popen(*args)
        lines: list[str] = []

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)

        threading.Thread(target=read, daemon=True).start()
        return proc, lines

    def await_sleep(self, seconds: int, hosts: list[TestHost]) -> None:
        deadline = time.monotonic() + 180
        while not all(self.sleeping(h, seconds) for h in hosts):
            assert time.monotonic() < deadline, f"no `sleep {seconds}` on {hosts}"
            time.sleep(0.5)


@pytest.fixture(scope="module", params=["bookworm", "trixie"])
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Migrating]:
    missing = missing_for_netns()
    if missing:
        pytest.skip(f"[hostkit] a fleet needs root and network namespaces; missing: {missing}")
    kit = systemd_kit(tmp_path_factory.mktemp("migrate-hosts"), request.param)
    try:
        project = tmp_path_factory.mktemp("migrate-project")
        (project / "fabfile.py").write_text("from tasks import ns\n")
        fleet = start_fleet(kit, project, Migrating, count=2)
        fleet.settings()
        fleet.app("1.0.0")
        fleet.fab("staging", "setup")
        yield fleet
    finally:
        stop_kit(kit)


def on_one_release(fleet: Migrating) -> None:
    """Skip on Debian 13: what this test shows does not depend on the release, and the suite's
    time is kept for the Ctrl-C tests, which run on both (sudo's use_pty differs)."""
    if fleet.hosts[0].release != "bookworm":
        pytest.skip("release-independent: shown on Debian 12 (the Ctrl-C tests run on both)")


def test_a_host_local_database_is_warned_and_only_the_primary_migrates(fleet: Migrating) -> None:
    checked = fleet.fab("staging", "check")
    assert "WARNING migrations: MIGRATE_COMMAND runs on the primary host only" in checked.stdout
    assert "LINKED_FILES has app.sqlite3" in checked.stdout
    proc = fleet.fab("staging", "deploy")
    assert "warning: MIGRATE_COMMAND runs on the primary host only" in proc.stderr
    lines = fleet.migrations()
    assert len(lines) == 1, lines
    release = fleet.current(fleet.hosts[0])
    assert lines[0].endswith(f" {release} {release}")  # `import app` found the release's app.py
    assert fleet.served() == ["1.0.0", "1.0.0"]


def test_migrate_on_all_migrates_every_host(fleet: Migrating) -> None:
    on_one_release(fleet)
    fleet.settings("MIGRATE_ON=all\n")
    fleet.app("1.0.1")
    planned = fleet.fab("staging", "plan")
    assert planned.stdout.count("migrate: MIGRATE_COMMAND runs here") == 2
    assert "warning" not in planned.stderr
    proc = fleet.fab("staging", "deploy")
    assert proc.stdout.count("migrate (on every host): python scripts/migrate.py") == 2
    lines = fleet.migrations()[1:]
    release = fleet.current(fleet.hosts[0])
    assert len({line.split()[0] for line in lines}) == len(lines) == 2  # one on each host
    assert all(line.endswith(f" {release} {release}") for line in lines), lines
    assert fleet.served() == ["1.0.1", "1.0.1"]
    fleet.fab("staging", "exec", "--once", "python scripts/migrate.py")  # exec: the same path
    assert fleet.migrations()[-1].endswith(f" {release} {release}")  # run in `current`


def interrupted(fleet: Migrating, sig: int, seconds: int) -> tuple[subprocess.Popen[str], str]:
    """A deploy whose migration sleeps ``seconds``, sent ``sig`` once every migrating host runs
    the sleep; its output."""
    fleet.app("1.0.2")
    proc, lines = fleet.start("staging", "deploy")
    try:
        migrating = fleet.hosts if "MIGRATE_ON=all" in fleet.env_text() else fleet.hosts[:1]
        fleet.await_sleep(seconds, migrating)
        started = time.monotonic()
        os.kill(proc.pid, sig)
        proc.wait(timeout=120)
        fleet.stopped_after = time.monotonic() - started  # type: ignore[attr-defined]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.5)  # the reader thread's last lines
    out = "".join(lines)
    print(out[-6000:])
    return proc, out


@pytest.mark.parametrize("where", ["primary", "all"])
def test_ctrl_c_stops_the_migration_on_the_host_and_removes_the_release(
    fleet: Migrating, where: str
) -> None:
    fleet.settings(f"MIGRATE_ON={where}\n", f"{MIGRATE} && sleep 307")
    before = fleet.releases_now()
    served = fleet.served()
    proc, out = interrupted(fleet, signal.SIGINT, 307)
    assert proc.returncode != 0
    assert all(fleet.sleeping(h, 307) == [] for h in fleet.hosts)  # gone when fab returned
    migrating = fleet.hosts if where == "all" else fleet.hosts[:1]
    assert out.count("stopped MIGRATE_COMMAND: the SSH session ended") == len(migrating)
    assert "migrate interrupted (Ctrl-C)" in out and "No host was switched" in out
    assert fleet.releases_now() == before  # the new release removed everywhere
    assert fleet.served() == served
    print("Ctrl-C to fab's exit:", round(fleet.stopped_after, 2), "s")  # type: ignore[attr-defined]
    status = fleet.fab("staging", "lock.status").stdout  # the lock was released
    assert status.count("not locked") == 2, status


def test_a_killed_fab_leaves_no_migration_and_cleanup_drops_its_release(fleet: Migrating) -> None:
    on_one_release(fleet)
    fleet.settings("MIGRATE_ON=all\n", f"{MIGRATE} && sleep 308")
    before = fleet.releases_now()
    _, _ = interrupted(fleet, signal.SIGKILL, 308)
    deadline = time.monotonic() + 30
    while any(fleet.sleeping(h, 308) for h in fleet.hosts):
        assert time.monotonic() < deadline, "the migration outlived the killed fab"
        time.sleep(0.5)
    left = [sorted(set(now) - set(was)) for now, was in zip(fleet.releases_now(), before)]
    assert all(len(names) == 1 for names in left), left  # the unswitched release stays
    fleet.settings("MIGRATE_ON=all\n")
    fleet.app("1.0.3")
    proc = fleet.fab("staging", "deploy")  # breaks the dead fab's lock, saying so
    assert "stale" in proc.stdout + proc.stderr
    for host, names in zip(fleet.hosts, left):
        assert names[0] not in fleet.releases(host)
        assert f"[{host.address}] cleanup: kept" in proc.stdout and names[0] in proc.stdout
    assert fleet.served() == ["1.0.3", "1.0.3"]


def test_migrate_timeout_stops_a_long_migration(fleet: Migrating) -> None:
    on_one_release(fleet)
    fleet.settings("MIGRATE_ON=all\nMIGRATE_TIMEOUT=3\n", f"{MIGRATE} && sleep 309")
    before = fleet.releases_now()
    fleet.app("1.0.4")
    proc = fleet.fab("staging", "deploy", ok=False)
    out = proc.stdout + proc.stderr
    assert "MIGRATE_COMMAND ran longer than MIGRATE_TIMEOUT (3 s) and was stopped" in out
    assert all(fleet.sleeping(h, 309) == [] for h in fleet.hosts)
    assert fleet.releases_now() == before
    assert fleet.served() == ["1.0.3", "1.0.3"]
    assert "No host was switched" in out
