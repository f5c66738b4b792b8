"""Operating a fleet, on three real-systemd hosts (Debian 12 in systemd-nspawn): a switch that
fails on one host and `deploy --resume` finishing it there alone, fab SIGKILLed in the middle
of a rolling switch with every host consistent afterwards, two deploys with --lock-wait one
after the other, and rollback on hosts whose release histories differ.

"Consistent" is what the host serves (the app answers with the release it runs from) against
what `current` names. "Not touched" is the host's sshd log: no new login at all.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import missing_for_netns, stop_kit, systemd_kit
from tests.hostkit import TestHost
from tests.integration.apps import write_app
from tests.integration.test_deploy import RequestLoop
from tests.integration.test_fleet import Fleet, start_fleet

APP, PORT, ROOT = "hello", 8000, "/srv/hello"


class Ops(Fleet):
    """A `Fleet` with what these tests look at: releases served, logins, the records."""

    def app(self, version: str, *, marked_unhealthy: bool = False) -> None:
        write_app(self.project / "app", version)
        (self.project / "app" / "secrets.env").write_text("GREETING=hi\n")

    def answer(self, host: TestHost) -> dict[str, str]:
        with urllib.request.urlopen(host.url(PORT, "/"), timeout=10) as reply:
            return json.loads(reply.read())

    def logins(self, host: TestHost) -> int:
        return host.path("/var/log/sshd.log").read_text().count("Accepted publickey")

    def revision_file(self, host: TestHost, release: str) -> dict[str, str]:
        text = host.path(f"{ROOT}/releases/{release}/REVISION").read_text()
        return dict(line.split("=", 1) for line in text.splitlines())

    def audit(self, host: TestHost) -> list[dict[str, str]]:
        lines = host.path(f"{ROOT}/revisions.log").read_text().splitlines()
        return [dict(part.split("=", 1) for part in line.split("\t")) for line in lines]

    def settled(self, timeout: float = 60) -> None:
        """Wait until no switch runs detached on any host (each log has its exit status)."""
        deadline = time.monotonic() + timeout
        for host in self.hosts:
            runs = host.path(f"{ROOT}/.switch")
            while any(not log.with_suffix(".rc").exists() for log in runs.glob("*.log")):
                assert time.monotonic() < deadline, f"{host.name}: a switch is still running"
                time.sleep(0.2)

    def consistent(self) -> list[str]:
        """Every host serves the release `current` names; return those releases."""
        served = []
        for host in self.hosts:
            answer = self.answer(host)
            assert answer["release"] == self.current(host), (host.name, answer)
            served.append(answer["release"])
        return served


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ops]:
    missing = missing_for_netns()
    if missing:
        pytest.skip(f"[hostkit] a fleet needs root and network namespaces; missing: {missing}")
    kit = systemd_kit(tmp_path_factory.mktemp("ops-hosts"), "bookworm")
    try:
        project = tmp_path_factory.mktemp("ops-project")
        (project / "fabfile.py").write_text("from fabdeploy import ns  # noqa: F401\n")
        ops = start_fleet(kit, project, Ops)
        ops.app("1.0.0")
        ops.fab("staging", "setup")
        ops.fab("staging", "deploy")
        yield ops
    finally:
        stop_kit(kit)


def test_a_switch_failing_on_one_host_then_resume_finishes_it_there_alone(ops: Ops) -> None:
    h1, h2, h3 = ops.hosts
    old = ops.current(h3)
    runs = f"{ROOT}/.switch"  # the switch writes its script and log here first: make it full
    h3.sh(
        f"mkdir -p {runs} && mount -t tmpfs -o size=8k tmpfs {runs} && "
        f"(dd if=/dev/zero of={runs}/fill bs=1k count=64 2>/dev/null || true)"
    )
    try:
        ops.app("2.0.0")
        failed = ops.fab("staging", "deploy", "--summary-json", "summary.json", ok=False)
    finally:
        h3.sh(f"umount {runs}")
    assert f"switch (batch 3 of 3) failed on 1 host(s): [{h3.address}]" in failed.stderr
    assert "(disk full?)" in failed.stdout + failed.stderr
    summary = json.loads((ops.project / "summary.json").read_text())
    release, deploy_id = summary["release"], summary["id"]
    assert summary["rounds"] == [[h1.address], [h2.address], [h3.address]]
    assert [ops.current(h) for h in ops.hosts] == [release, release, old]
    assert ops.consistent() == [release, release, old]

    logins = [ops.logins(h) for h in ops.hosts]
    resumed = ops.fab("staging", "deploy", "--resume")
    assert f"resuming deploy {deploy_id} of {release} on {h3.address}" in resumed.stdout
    assert f"[{h1.address}] serves {release} (deploy {deploy_id}): not touched" in resumed.stdout
    assert ops.consistent() == [release] * 3
    assert ops.served() == ["2.0.0"] * 3
    assert [ops.logins(h) for h in (h1, h2)] == logins[:2]  # never contacted
    assert ops.logins(h3) > logins[2]
    # one deploy, one id: in every host's REVISION and its last revisions.log line
    for host in ops.hosts:
        assert ops.revision_file(host, release)["deploy_id"] == deploy_id
        assert ops.audit(host)[-1]["deploy_id"] == deploy_id
        assert ops.audit(host)[-1]["result"] == "ok"
    assert ops.audit(h3)[-2]["result"] == "failed"  # the first try, recorded with its id
    again = ops.fab("staging", "deploy", "--resume")
    assert "nothing to resume" in again.stdout
    ops.tracked()


def test_fab_killed_in_a_rolling_switch_leaves_every_host_consistent(ops: Ops) -> None:
    ops.app("3.0.0")
    loops = [RequestLoop(h.url(PORT, "/")) for h in ops.hosts]
    for loop in loops:
        loop.__enter__()
    try:
        victim = ops.popen("staging", "deploy")
        assert victim.stdout is not None
        seen = []
        for line in victim.stdout:
            seen.append(line)
            if "switch: batch 2 of 3" in line:
                break
        time.sleep(0.6)  # the second host's switch has begun: USR2 sent, a master booting
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=30)
        ops.settled()
        after = ops.consistent()  # each host serves what `current` names
        print("after the kill:", after, "".join(seen)[-2000:])
    finally:
        for loop in loops:
            loop.__exit__(None, None, None)
    failures = sum(len(loop.failures) for loop in loops)
    total = sum(loop.ok for loop in loops) + failures
    print(f"killed in a rolling switch: {failures} failed of {total} requests")
    assert failures == 0 and total > 30
    resumed = ops.fab("staging", "deploy", "--resume")
    assert "resuming deploy" in resumed.stdout
    assert ops.served() == ["3.0.0"] * 3
    assert len(set(ops.consistent())) == 1
    ops.tracked()


def test_two_deploys_with_lock_wait_run_one_after_the_other(ops: Ops) -> None:
    ops.app("4.0.0")
    first = ops.popen("staging", "deploy", "--lock-wait", "120")
    assert first.stdout is not None
    head = []
    for line in first.stdout:  # until the first deploy has built 4.0.0 and ships it
        head.append(line)
        if "-> upload" in line:
            break
    ops.app("4.0.1")  # what the second deploy builds, once it has the lock
    threads: list[subprocess.CompletedProcess[str]] = []
    worker = threading.Thread(
        target=lambda: threads.append(ops.fab("staging", "deploy", "--lock-wait", "120"))
    )
    worker.start()
    rest, _ = first.communicate(timeout=300)
    worker.join(timeout=300)
    assert first.returncode == 0, "".join(head) + rest
    second = threads[0]
    assert "waiting up to 120s for the deploy lock" in second.stdout
    assert ops.served() == ["4.0.1"] * 3
    for host in ops.hosts:
        deploys = [a for a in ops.audit(host) if a["action"] == "deploy"][-2:]
        assert [a["result"] for a in deploys] == ["ok", "ok"]
        assert deploys[0]["deploy_id"] != deploys[1]["deploy_id"]
        assert deploys[0]["time"] <= deploys[1]["time"]


def test_rollback_on_hosts_whose_histories_differ(ops: Ops) -> None:
    h1 = ops.hosts[0]
    base = ops.current(h1)
    assert [ops.current(h) for h in ops.hosts] == [base] * 3
    ops.app("5.0.0")
    single = ops.fab("-H", f"deploy@{h1.address}", "staging", "deploy")
    assert single.stdout.count("deployed ") == 1
    newer = ops.current(h1)
    earlier = {h.name: ops.releases(h) for h in ops.hosts}
    # h1 would go back to base, h2 and h3 to what served before base: they disagree
    refused = ops.fab("staging", "rollback", ok=False)
    assert "the hosts disagree on the release to roll back to; nothing was changed" in (
        refused.stderr
    )
    for host in ops.hosts:
        assert f"  {host.address}: serving " in refused.stderr
    assert [ops.current(h) for h in ops.hosts] == [newer, base, base]
    # --to a release every host has; -H a,b,c is one fleet by default (one rollback)
    common = sorted(set.intersection(*(set(r) for r in earlier.values())) - {base, newer})
    target = common[-1]
    hosts = ",".join(f"deploy@{h.address}" for h in ops.hosts)
    done = ops.fab("-H", hosts, "staging", "rollback", "--to", target)
    assert done.stdout.count("switch: batch 1 of 3") == 1
    assert ops.consistent() == [target] * 3
    # then rollback (no --to): each host goes back to what served before `target` took over
    back = ops.fab("staging", "rollback", ok=False)  # h1: newer, h2/h3: base
    assert "disagree" in back.stderr
    ops.fab("staging", "rollback", "--to", base)
    assert ops.consistent() == [base] * 3
    ops.tracked()


def test_deploy_per_host_keeps_fabrics_loop(ops: Ops) -> None:
    ops.app("6.0.0")
    hosts = ",".join(f"deploy@{h.address}" for h in ops.hosts[:2])
    proc = ops.fab("-H", hosts, "staging", "deploy", "--per-host")
    assert proc.stdout.count("deployed ") == 2  # two deploys, one per -H host
    assert ops.served()[:2] == ["6.0.0"] * 2


def test_plan_is_what_the_following_deploy_does(ops: Ops) -> None:
    write_app(ops.project / "app", "7.0.0", requirements=("python-dotenv",), uses="dotenv")
    (ops.project / "app" / "secrets.env").write_text("GREETING=hi\nNEW_KEY=x1y2z3\n")
    env = ops.project / "config" / "staging.env"
    settings = env.read_text()
    rounds = settings.replace("SWITCH_BATCH=1\n", "SWITCH_BATCH=1,2\n")
    env.write_text(rounds.replace("CANARY_BAKE=0\n", "CANARY_BAKE=1\n"))  # a canary that bakes
    try:
        logins = [ops.logins(h) for h in ops.hosts]
        served = [ops.current(h) for h in ops.hosts]
        planned = json.loads(ops.fab("staging", "plan", "--json").stdout)
        assert [ops.current(h) for h in ops.hosts] == served  # the plan changed nothing
        assert [ops.logins(h) for h in ops.hosts] == [n + 1 for n in logins]  # one login each
        human = ops.fab("staging", "plan")
        assert "switch rounds: 1. " in human.stdout
        assert f"[{ops.hosts[0].address}] canary: watched 1s after its switch" in human.stdout
        done = ops.fab("staging", "deploy", "--summary-json", "plan-summary.json")
    finally:
        env.write_text(settings)
    summary = json.loads((ops.project / "plan-summary.json").read_text())
    assert [p["host"] for p in planned] == [h["host"] for h in summary["hosts"]]
    assert (
        planned[0]["rounds"]
        == summary["rounds"]
        == [[h.address] for h in ops.hosts[:1]] + [[h.address for h in ops.hosts[1:]]]
    )
    for plan, host in zip(planned, summary["hosts"]):
        assert plan["change"] is True and plan["revision"] == summary["revision"]
        assert plan["serving"] == host["served_before"]
        assert plan["round"] == next(
            n for n, names in enumerate(summary["rounds"], 1) if plan["host"] in names
        )
        venv_line = f"[{plan['host']}] venv {plan['venv']} " + (
            "reused" if plan["venv_reused"] else "built"
        )
        assert venv_line in done.stdout, venv_line
        assert "python_dotenv" in plan["packages"] or "python-dotenv" in plan["packages"]
        skipped = f"[{plan['host']}] packages not shipped" in done.stdout
        assert skipped is not plan["packages_shipped"]
        assert plan["secrets_added"] == ["NEW_KEY"] and plan["secrets_removed"] == []
        assert set(plan["files"].values()) == {""}  # setup would change no file
        assert plan["hooks"] == []
        # the probes it plans are the ones the switch made, the bake the one that ran
        assert plan["probes"] == list(host["probes"]) and set(host["probes"].values()) == {"200"}
        assert bool(plan["canary"]) is (host["canary"] is not None) is (plan["round"] == 1)
    assert planned[0]["canary"] == {"bake": 1, "max_5xx": 5, "min_requests": 20}
    assert ops.served() == ["7.0.0"] * 3
    again = json.loads(ops.fab("staging", "plan", "--json").stdout)
    assert [p["change"] for p in again] == [False] * 3  # the next deploy would change nothing
    assert "no change: every host already serves" in ops.fab("staging", "deploy").stdout


def test_a_failed_canary_stops_the_deploy_with_every_other_host_as_it_was(ops: Ops) -> None:
    h1 = ops.hosts[0]
    env = ops.project / "config" / "staging.env"
    settings = env.read_text()
    env.write_text(settings.replace("SWITCH_BATCH=1\n", ""))  # the default: 1,25%
    served, releases = ops.served(), [ops.releases(h) for h in ops.hosts]
    logs = [len(ops.audit(h)) for h in ops.hosts]
    h1.sh(f"touch {ROOT}/shared/unhealthy")
    try:
        Fleet.app(ops, "9.0.0", marked_unhealthy=True)  # unhealthy where the marker is
        failed = ops.fab("staging", "deploy", ok=False)
    finally:
        h1.sh(f"rm -f {ROOT}/shared/unhealthy")
        env.write_text(settings)
    assert "switch: batch 1 of 3 (the canary)" in failed.stdout
    assert f"switch (batch 1 of 3) failed on 1 host(s): [{h1.address}]" in failed.stderr
    assert "No other host was switched" in failed.stderr
    assert "switch: batch 2 of 3" not in failed.stdout
    assert ops.served() == served
    assert [ops.releases(h) for h in ops.hosts] == releases  # the prepared release removed
    for host, before in zip(ops.hosts, logs):
        assert [a["result"] for a in ops.audit(host)[before:]] == ["failed"]
    ops.consistent()
    ops.tracked()
