"""Fleet deploys on three real-systemd hosts (Debian 12 in systemd-nspawn), with the example
user fabfile (tests/example_project).

Prepare runs on every host before any switch; the switch goes host by host (SWITCH_BATCH=1),
each behind its health check. A host that cannot prepare stops the deploy with no host
switched; a host failing its live health check in the second batch goes back, the third is
never switched, and the report says who serves what. The example fabfile's migration hook
runs once per fleet deploy, before the first switch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from tests.conftest import fab_env, missing_for_netns, stop_kit, systemd_kit
from tests.hostkit import HostKit, TestHost
from tests.integration.apps import write_app
from tests.integration.test_deploy import RequestLoop

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))
EXAMPLE_FABFILE = REPO / "tests" / "example_project" / "fabfile.py"
APP, PORT, ROOT = "hello", 8000, "/srv/hello"

#: The example app's migration: one line per run in shared/log/migrations.log, saying where
#: it ran, which release, and whether the app's secrets were in its environment.
MIGRATE = """import os, pathlib, socket
line = f"{socket.gethostname()} {pathlib.Path.cwd().name} secrets={'GREETING' in os.environ}\\n"
with open("../../shared/log/migrations.log", "a") as log:
    log.write(line)
"""
#: Health that fails on the live port only where the host has a marker file: the smoke check
#: (side port) passes, the switch's own health gate must catch it.
MARKED_UNHEALTHY = (
    '    ok = bool(os.environ.get("GREETING"))\n',
    "    from flask import request\n\n"
    '    marked = Path("/srv/hello/shared/unhealthy").exists() and request.host.endswith(":8000")\n'
    '    ok = bool(os.environ.get("GREETING")) and not marked\n',
)


@dataclass
class Fleet:
    hosts: list[TestHost]
    project: Path
    env: dict[str, str]

    def fab(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [FAB, *args],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        print(proc.stdout[-6000:], proc.stderr[-3000:])
        assert (proc.returncode == 0) == ok, f"fab {args} exited {proc.returncode}"
        return proc

    def popen(self, *args: str, apart: bool = False) -> subprocess.Popen[str]:
        """``fab`` started in the background, its stderr in its stdout (``apart``: its own)."""
        return subprocess.Popen(
            [FAB, *args],
            cwd=self.project,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if apart else subprocess.STDOUT,
            text=True,
        )

    def app(
        self, version: str, *, marked_unhealthy: bool = False, broken: str | None = None
    ) -> None:
        dest = write_app(self.project / "app", version, broken=broken)
        (dest / "migrate.py").write_text(MIGRATE)
        (dest / "secrets.env").write_text("GREETING=hi\n")
        if marked_unhealthy:
            app = dest / "app.py"
            old, new = MARKED_UNHEALTHY
            assert old in app.read_text()
            app.write_text(app.read_text().replace(old, new))

    def served(self) -> list[str]:
        versions = []
        for host in self.hosts:
            with urllib.request.urlopen(host.url(PORT, "/"), timeout=10) as answer:
                versions.append(json.loads(answer.read())["version"])
        return versions

    def current(self, host: TestHost) -> str:
        return os.readlink(host.path(f"{ROOT}/current")).rpartition("/")[2]

    def releases(self, host: TestHost) -> list[str]:
        return sorted(p.name for p in host.path(f"{ROOT}/releases").iterdir())

    def tracked(self) -> None:
        """On every host systemd's MainPID is the master in the pidfile, active, never restarted."""
        for host in self.hosts:
            master = host.sh(f"cat /run/{APP}/gunicorn.pid").stdout.strip()
            shown = host.sh(f"systemctl show -p MainPID,NRestarts,ActiveState {APP}").stdout
            assert dict(line.split("=", 1) for line in shown.split()) == {
                "MainPID": master,
                "NRestarts": "0",
                "ActiveState": "active",
            }, (host.name, shown)

    def migrations(self) -> list[str]:
        lines = []
        for host in self.hosts:
            log = host.path(f"{ROOT}/shared/log/migrations.log")
            lines += log.read_text().splitlines() if log.exists() else []
        return lines


F = TypeVar("F", bound=Fleet)


def start_fleet(kit: HostKit, project: Path, kind: type[F], count: int = 3) -> F:
    """``count`` hosts of ``kit`` as the staging environment of ``project`` (its fabfile there)."""
    hosts = kit.start(count)
    (project / "config").mkdir()
    (project / "config" / "staging.env").write_text(
        f"HOSTS={','.join(f'deploy@{h.address}' for h in hosts)}\n"
        f"SSH_KEY={kit.client_key}\nKNOWN_HOSTS={kit.known_hosts}\n"
        f"APP_NAME={APP}\nAPP_DIR=app\nBIND=0.0.0.0:{PORT}\nSECRETS_FILE=app/secrets.env\n"
        "WORKERS=1\nHEALTH_TIMEOUT=10\nSWITCH_BATCH=1\nPARALLEL=8\nTEST_COMMAND=\n"
        "CANARY_BAKE=0\n"  # no bake but where a test sets one (test_fleet's canary test)
    )
    env = fab_env()
    return kind(hosts, project, env)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    missing = missing_for_netns()
    if missing:
        pytest.skip(f"[hostkit] a fleet needs root and network namespaces; missing: {missing}")
    kit = systemd_kit(tmp_path_factory.mktemp("fleet-hosts"), "bookworm")
    try:
        project = tmp_path_factory.mktemp("fleet-project")
        shutil.copy(EXAMPLE_FABFILE, project / "fabfile.py")
        fleet = start_fleet(kit, project, Fleet)
        env_file = project / "config" / "staging.env"  # the canary bakes 2 s in this module
        env_file.write_text(env_file.read_text().replace("CANARY_BAKE=0\n", "CANARY_BAKE=2\n"))
        fleet.app("1.0.0")
        fleet.fab("staging", "setup")
        yield fleet
    finally:
        stop_kit(kit)


def test_fleet_prepares_everywhere_then_switches_host_by_host(fleet: Fleet) -> None:
    proc = fleet.fab("staging", "deploy")
    out = proc.stdout
    assert fleet.served() == ["1.0.0"] * 3
    first_switch = out.index("-> switch")
    for host in fleet.hosts:
        assert out.index(f"[{host.address}] -> smoke") < first_switch  # all prepared first
    assert "switch: batch 1 of 3" in out and "switch: batch 3 of 3" in out
    # the example fabfile's hook: once per fleet deploy, before any switch, with the secrets
    assert len(fleet.migrations()) == 1
    assert fleet.migrations()[0].endswith("secrets=True")
    assert out.index("hook before_switch: migrate (once)") < first_switch
    # one SSH connection per host for the whole command (summary column conn/sess)
    for host in fleet.hosts:
        row = next(line for line in out.splitlines() if line.startswith(host.address + " "))
        assert " 1/" in row and "serving" in row
    fleet.tracked()


def test_a_host_that_cannot_prepare_stops_the_deploy_with_none_switched(fleet: Fleet) -> None:
    before = [fleet.current(h) for h in fleet.hosts]
    releases = [fleet.releases(h) for h in fleet.hosts]
    full = fleet.hosts[1]
    incoming = f"{ROOT}/.incoming"
    full.sh(f"mkdir -p {incoming} && mount -t tmpfs -o size=64k tmpfs {incoming}")
    try:
        fleet.app("2.0.0")
        (fleet.project / "app" / "data.bin").write_bytes(os.urandom(256 << 10))  # > 64 KiB
        proc = fleet.fab("staging", "deploy", ok=False)
    finally:
        full.sh(f"umount {incoming}")
    assert f"prepare failed on 1 host(s): [{full.address}]" in proc.stderr
    assert "No host was switched" in proc.stderr
    assert "-> switch" not in proc.stdout
    assert fleet.served() == ["1.0.0"] * 3
    assert [fleet.current(h) for h in fleet.hosts] == before
    assert [fleet.releases(h) for h in fleet.hosts] == releases  # half-made releases removed
    assert len(fleet.migrations()) == 1  # the hook never ran


def test_a_batch_failing_its_health_check_goes_back_and_the_report_says_so(fleet: Fleet) -> None:
    h1, h2, h3 = fleet.hosts
    h2.sh(f"touch {ROOT}/shared/unhealthy")
    try:
        fleet.app("3.0.0", marked_unhealthy=True)
        proc = fleet.fab("staging", "deploy", ok=False)
    finally:
        h2.sh(f"rm -f {ROOT}/shared/unhealthy")
    assert f"switch (batch 2 of 3) failed on 1 host(s): [{h2.address}]" in proc.stderr
    assert fleet.served() == ["3.0.0", "1.0.0", "1.0.0"]
    assert f"{h1.address} serving" in proc.stderr and f"{h2.address} back on" in proc.stderr
    assert f"{h3.address} not switched" in proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line[:1].isdigit()}
    assert "serving" in rows[h1.address] and "back on" in rows[h2.address]
    assert "not switched" in rows[h3.address]
    assert len(fleet.migrations()) == 2  # ran once, before the first batch
    fleet.tracked()  # the host that went back is still the unit's, as are the others


def test_a_canary_serving_5xx_goes_back_and_no_other_host_switches(fleet: Fleet) -> None:
    """A release whose home page raises while /health answers 200, deployed while a request
    loop runs against every host: the canary's access log shows the 5xx during its bake (the
    probes ask /health only here, so the log alone must tell), the canary goes back, the deploy
    fails naming it, and the hosts of the later rounds never switch nor answer one request
    wrong. (The next test's deploy bakes this canary again, on an access log that holds these
    500s: it passes, so only the lines after its switch count.)"""
    h1, h2, h3 = fleet.hosts
    served, releases = fleet.served(), [fleet.releases(h) for h in fleet.hosts]
    env_file = fleet.project / "config" / "staging.env"
    settings = env_file.read_text()
    report = fleet.project / "summary.json"
    baked = settings.replace("CANARY_BAKE=2\n", "CANARY_BAKE=20\n")
    env_file.write_text(baked + "CANARY_URLS=/health\n")
    try:
        fleet.app("6.0.0", broken="home")
        loops = [RequestLoop(h.url(PORT, "/"), limit=120, where=h.address) for h in fleet.hosts]
        for loop in loops:
            loop.__enter__()
        try:
            proc = fleet.fab("staging", "deploy", "--summary-json", str(report), ok=False)
        finally:
            for loop in loops:
                loop.__exit__()
        for loop, host in zip(loops, fleet.hosts):
            loop.report(f"canary deploy of a broken home page, {host.address}")
        assert proc.stderr.count(f"canary (batch 1 of 3) failed on 1 host(s): [{h1.address}]") == 1
        assert (
            "answered 5xx" in proc.stderr and "over CANARY_MAX_5XX=5%), by path: / " in proc.stderr
        )
        assert "No other host was switched" in proc.stderr
        assert (
            f"{h2.address} not switched" in proc.stderr
            and f"{h3.address} not switched" in proc.stderr
        )
        assert "switch: batch 2 of 3" not in proc.stdout
        assert fleet.served() == served
        for loop, was in zip(loops[1:], served[1:]):  # the later rounds: the old release all along
            assert loop.failures == [] and loop.ok > 20 and set(loop.versions) == {was}
        wrong = len(loops[0].failures)
        assert wrong and all("HTTPError 500" in each for each in loops[0].failures)
        data = json.loads(report.read_text())
        canary = data["hosts"][0]["canary"]
        assert data["ok"] is False and data["hosts"][1]["canary"] is None
        assert canary["errors"] >= 1 and canary["requests"] >= 20 and canary["rate"] > 5
        assert canary["failed_paths"]["/"] == canary["errors"] <= wrong  # every 500 the loop met
        assert canary["probes"] == {f"http://127.0.0.1:{PORT}/health": "200"}
        assert [h["probes"] for h in data["hosts"][1:]] == [{}, {}]
        assert [fleet.releases(h) for h in fleet.hosts] == releases  # removed everywhere
        fleet.tracked()
    finally:
        env_file.write_text(settings)


def test_dash_h_fleet_flag_and_the_projects_own_tasks(fleet: Fleet) -> None:
    fleet.app("4.0.0")
    planned = json.loads(fleet.fab("staging", "plan", "--json").stdout)  # the fabfile's hook
    assert [p["hooks"] for p in planned] == [["before_switch: migrate (once)"], [], []]
    hosts = ",".join(f"deploy@{h.address}" for h in fleet.hosts)
    proc = fleet.fab("-H", hosts, "staging", "ship", "--fleet")
    assert fleet.served() == ["4.0.0"] * 3
    assert proc.stdout.count("hook before_switch: migrate (once)") == 1
    assert proc.stdout.count("deployed ") == 1  # one fleet deploy, not one per -H host
    # the canary baked on an access log holding the previous test's 500s: only the requests
    # after its switch count (none here but fabdeploy's probes, which are not counted)
    h1 = fleet.hosts[0]
    passed = re.search(rf"^\[{re.escape(h1.address)}\] canary passed: 0 requests, 0 answered 5xx .*$", proc.stdout, re.M)  # fmt: skip
    assert passed and passed.group(0).endswith(f"; probes: http://127.0.0.1:{PORT}/ 200"), passed
    assert f"canary {h1.address}: 0 requests" in proc.stdout
    # the requirements did not change: every host has the venv, so no package is shipped
    assert proc.stdout.count("packages not shipped: the host has this release's venv") == 3
    assert len(fleet.migrations()) == 4  # (the canary test's deploy ran it before its switch)
    uptime = fleet.fab("staging", "uptime")
    for host in fleet.hosts:
        assert f"[{host.address}]" in uptime.stdout and "load average" in uptime.stdout


def test_a_failing_hook_from_the_env_file_stops_the_deploy_with_none_switched(
    fleet: Fleet,
) -> None:
    served, releases = fleet.served(), [fleet.releases(h) for h in fleet.hosts]
    env_file = fleet.project / "config" / "staging.env"
    settings = env_file.read_text()
    env_file.write_text(settings + "HOOK_BEFORE_SWITCH=once: echo checking; exit 7\n")
    try:
        fleet.app("5.0.0")
        proc = fleet.fab("staging", "deploy", ok=False)
    finally:
        env_file.write_text(settings)
    assert "hook before_switch `echo checking; exit 7` failed (exit 7)" in proc.stderr
    assert "-> switch" not in proc.stdout
    assert fleet.served() == served
    assert [fleet.releases(h) for h in fleet.hosts] == releases
