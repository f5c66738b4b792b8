"""The README's first command, run as a newcomer runs it: `bash scripts/demo` starts a
throwaway host, deploys examples/app to it and shows it serving; `scripts/demo down` removes it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import missing_for_netns
from tests.hostkit import nspawn_unavailable_reason

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / ".fabdeploy" / "demo"


def netns_names() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}


def test_the_demo_deploys_the_example_app_and_shows_it_serving() -> None:
    missing = missing_for_netns()
    if missing:
        pytest.skip(f"[hostkit] the demo needs root and network namespaces; missing: {missing}")
    if (STATE / "state.json").exists():
        pytest.skip(f"a demo host of yours is running ({STATE}); stop it with scripts/demo down")
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "examples/app"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    if dirty.strip():
        pytest.skip("examples/app has uncommitted changes: the demo deploys committed code")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABDEPLOY_")}
    started: list[dict[str, object]] = []
    try:
        up = subprocess.run(
            ["bash", "scripts/demo"], cwd=REPO, env=env, capture_output=True, text=True,
            timeout=600, check=False,
        )  # fmt: skip
        out = up.stdout + up.stderr
        assert up.returncode == 0, out[-4000:]
        answer = re.search(r"demo: the app answers at (http://\S+):\n200 (\{.*\})", out)
        assert answer, out[-4000:]
        served = json.loads(answer.group(2))
        assert served["app"] == "hello" and served["version"] == "1.0.0"
        assert re.search(r"\n\S+\s+active\s+\d{8}T", out), "fab demo status shows it active"
        assert "sudo bash scripts/demo down" in out
        started = json.loads((STATE / "state.json").read_text())["hosts"]
        if nspawn_unavailable_reason("bookworm") is None:  # a real server where one can boot
            assert "mode=nspawn" in out, out[-4000:]
            assert re.search(r"demo: the app answers at http://10\.", out)
        else:
            assert "demo: no real-systemd host here" in out
    finally:
        down = subprocess.run(
            ["bash", "scripts/demo", "down"], cwd=REPO, env=env, capture_output=True,
            text=True, timeout=120, check=False,
        )  # fmt: skip
    assert down.returncode == 0, down.stdout + down.stderr
    assert started, "the demo recorded its host"
    for host in started:  # only the demo's own: other test files may run hosts meanwhile
        if host["netns"]:
            assert host["netns"] not in netns_names(), "the demo host's namespace is gone"
        if host["machine"]:
            assert not list(Path("/sys/fs/cgroup").glob(f"*/nspawn-{host['machine']}")), "gone"
            assert not Path(f"/sys/class/net/{host['veth']}").exists()
    assert not STATE.exists() and not (REPO / "config" / "demo.env").exists()
