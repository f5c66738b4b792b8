"""The units' sandbox as a real systemd applies and rates it (docs/security.md#what-the-unit-forbids),
for the modules that deploy: `exposure` is ``systemd-analyze security``'s overall exposure
of an installed unit (recorded as a figure of the run), `confined` what the unit's process
may do, seen from inside its own mount namespace."""

from __future__ import annotations

import re

from tests.conftest import figure
from tests.hostkit import TestHost

#: The rating every unit fabdeploy writes must reach (issue 21): 0 best, 10 worst.
MAX_EXPOSURE = 4.0
_OVERALL = re.compile(r"Overall exposure level for (\S+): (\d+\.\d+)")
#: A file a probe writes and removes at once.
PROBE = ".fabdeploy-sandbox-probe"


def exposure(host: TestHost, unit: str) -> float:
    """``systemd-analyze security --no-pager <unit>``'s overall exposure level on ``host``."""
    rated = host.sh(f"systemd-analyze security --no-pager {unit}", check=False)
    found = _OVERALL.search(rated.stdout)
    assert found and found.group(1) == unit, rated.stdout + rated.stderr
    level = float(found.group(2))
    figure(f"Debian {host.release}, {host.systemd}: systemd-analyze security {unit}: {level}")
    return level


def main_pid(host: TestHost, unit: str) -> int:
    """The unit's main process, as systemd tracks it."""
    pid = int(host.sh(f"systemctl show -p MainPID --value {unit}").stdout.strip())
    assert pid > 0, f"{unit} is not running"
    return pid


def confined(host: TestHost, pid: int, writable: list[str], readonly: list[str]) -> None:
    """Assert process ``pid`` runs sandboxed: no new privileges, a seccomp filter, no
    capability; in its mount namespace, as its user, it writes each of ``writable`` and none of
    ``readonly`` (a read-only file system), and sees no home directory."""
    status = dict(
        line.split(":\t", 1) for line in host.sh(f"cat /proc/{pid}/status").stdout.splitlines()
    )
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", status
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, status
    uid, gid = status["Uid"].split()[0], status["Gid"].split()[0]
    inside = f"nsenter -t {pid} -m -S {uid} -G {gid} --"
    for path in writable:
        made = host.sh(f"{inside} touch {path}/{PROBE} && {inside} rm {path}/{PROBE}", check=False)
        assert made.returncode == 0, f"{path} is not writable in the unit: {made.stderr}"
    for path in readonly:
        refused = host.sh(f"{inside} touch {path}/{PROBE}", check=False)
        assert "Read-only file system" in refused.stderr, f"{path}: {refused.stderr!r}"
    home = host.sh(f"{inside} ls /home", check=False)
    assert home.returncode != 0 and "Permission denied" in home.stderr, home
