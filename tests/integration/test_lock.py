"""The deploy lock on two real-systemd hosts (Debian 12 in systemd-nspawn): of two `fab deploy`
processes started at once exactly one proceeds and the other names it; with `--lock-wait`
the other waits on the primary host and then follows; a lock taken with `fab lock` makes a
deploy say who locked, since when and why.

The fleet serves one release; each deploy here deploys it again (a no-op after the lock), and
the fabfile's ``after_lock`` hook (`FABFILE`) keeps the lock held long enough for the second
deploy to find it. CI runs the race once; ``bench/lock_race.py`` runs it 20 times.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import missing_for_netns, stop_kit, systemd_kit
from tests.hostkit import TestHost
from tests.integration.test_fleet import ROOT, Fleet, start_fleet

#: The project's fabfile: a deploy holds the lock 2 seconds before it goes on.
FABFILE = """from fabdeploy import hooks, ns


@hooks.after("lock", ns, once=True)
def hold(ctx):
    ctx.run("sleep 2")
"""


class Locks(Fleet):
    """A `Fleet` of two hosts whose deploys hold the lock 2 seconds (`FABFILE`)."""

    def locked(self) -> list[bool]:
        """Whether each host has a deploy lock now."""
        return [host.path(f"{ROOT}/.lock").exists() for host in self.hosts]


@dataclass
class Outcome:
    """How the deploys of one race ended: exit statuses, pids and output."""

    codes: list[int]
    pids: list[int]
    out: list[str]
    err: list[str]

    @property
    def winners(self) -> list[int]:
        return [i for i, code in enumerate(self.codes) if code == 0]


def race(fleet: Fleet, *extra: str) -> Outcome:
    """Two `fab staging deploy` processes started at once (``extra``: more options for both)."""
    args = ("staging", "deploy", "--skip-tests", *extra)
    procs = [fleet.popen(*args, apart=True) for _ in range(2)]
    ended = [proc.communicate(timeout=600) for proc in procs]
    return Outcome(
        [proc.returncode for proc in procs],
        [proc.pid for proc in procs],
        [out for out, _ in ended],
        [err for _, err in ended],
    )


def make_locks(kit, project) -> Locks:  # type: ignore[no-untyped-def]
    """Two hosts of ``kit``, set up and serving 1.0.0, deploys holding the lock 2 s; the app
    runs as ``web`` (so what runs as the app user goes through sudo, which the journal
    records)."""
    locks = start_fleet(kit, project, Locks, count=2)
    env_file = project / "config" / "staging.env"
    env_file.write_text(env_file.read_text() + "APP_USER=web\n")
    (project / "fabfile.py").write_text(FABFILE)
    locks.app("1.0.0")
    locks.fab("staging", "setup")
    locks.fab("staging", "deploy")
    return locks


@pytest.fixture(scope="module")
def locks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Locks]:
    missing = missing_for_netns()
    if missing:
        pytest.skip(f"[hostkit] a fleet needs root and network namespaces; missing: {missing}")
    kit = systemd_kit(tmp_path_factory.mktemp("lock-hosts"), "bookworm")
    try:
        yield make_locks(kit, tmp_path_factory.mktemp("lock-project"))
    finally:
        stop_kit(kit)


def test_of_two_deploys_started_at_once_exactly_one_proceeds(locks: Locks) -> None:
    outcome = race(locks)
    print(outcome.out, outcome.err)
    [winner] = outcome.winners
    loser = 1 - winner
    assert "no change: every host already serves" in outcome.out[winner]
    message = outcome.err[loser]
    primary = locks.hosts[0].address
    assert f"lock failed on 1 host(s): [{primary}] deploy lock held by " in message
    assert f"(pid {outcome.pids[winner]} on " in message
    assert "another deploy is running (deploy id " in message
    assert "-> check" not in outcome.out[loser]  # it went no further than the lock
    assert locks.locked() == [False, False]  # the winner released both


def test_with_lock_wait_the_second_deploy_waits_then_follows(locks: Locks) -> None:
    outcome = race(locks, "--lock-wait", "120")
    assert outcome.codes == [0, 0], outcome.err
    waited = [
        i for i in (0, 1) if "waiting up to 120s for the deploy lock held by" in outcome.out[i]
    ]
    assert len(waited) == 1, outcome.out
    follower = waited[0]
    assert f"[{locks.hosts[0].address}] waiting up to 120s" in outcome.out[follower]
    assert f"(pid {outcome.pids[1 - follower]} on " in outcome.out[follower]
    assert "no change: every host already serves" in outcome.out[follower]
    assert locks.locked() == [False, False]


def test_a_deliberate_lock_says_who_when_and_why(locks: Locks) -> None:
    locks.fab("staging", "lock", "--reason", "db backup")
    try:
        assert locks.locked() == [True, True]
        refused = locks.fab("staging", "deploy", "--skip-tests", ok=False)
        message = refused.stderr
        assert "deploy lock held by " in message and "`fab lock` on " in message
        assert (
            ': "db backup" since ' in message
            and " UTC: locked on purpose with `fab lock`" in message
        )
        assert "`fab staging unlock` releases it" in message
        assert "another deploy is running" not in message
    finally:
        locks.fab("staging", "unlock")
    assert locks.locked() == [False, False]


#: Every process's command line on a host, as often as ``ps`` can, into /root/argv.log (one
#: ``--`` line between two samples) until /root/sampling is removed (or 10 minutes pass).
SAMPLER = """touch /root/sampling
setsid nohup bash -c 'end=$((SECONDS + 600))
while [ -e /root/sampling ] && [ $SECONDS -lt $end ]; do ps -eo args; echo --; done' \\
  > /root/argv.log 2>/dev/null < /dev/null &
"""


def test_the_lock_token_is_in_no_command_line_nor_the_journal(locks: Locks) -> None:
    """While `fab lock`, `fab unlock` and a deploy take and release the lock, every host's
    process list is sampled over and over: no command line holds a token, nor does the
    journal (sudo records whole command lines there). The lock and revisions.log are the
    deploy root's owner's, who alone writes there."""
    primary = locks.hosts[0]
    since = {h.name: h.sh("date +%s").stdout.strip() for h in locks.hosts}
    for host in locks.hosts:
        host.sh(SAMPLER)
    try:
        locks.fab("staging", "lock", "--reason", "token test")
        held = owner_token(primary)
        assert held and owner_token(locks.hosts[1]) == held  # one `fab lock`, one token
        locks.fab("staging", "unlock")
        deploy = locks.popen("staging", "deploy", "--skip-tests", "--force")  # cleanup, record
        taken, deadline = "", time.monotonic() + 120
        while not taken and deploy.poll() is None and time.monotonic() < deadline:
            taken = owner_token(primary, wait=False)  # held 2 s (FABFILE)
            time.sleep(0.05)
        owners = primary.sh(f"stat -c %U {ROOT} {ROOT}/.lock").stdout.split()
        out, _ = deploy.communicate(timeout=600)
        assert deploy.returncode == 0, out
    finally:
        for host in locks.hosts:
            host.sh("rm -f /root/sampling; sleep 0.5")
    assert taken and taken != held
    assert owners[0] == owners[1], owners  # the lock is the deploy root's owner's
    for host in locks.hosts:
        samples = host.sh("cat /root/argv.log").stdout
        assert samples.count("\n--\n") > 50, samples[-2000:]  # it did sample, often
        assert "sshd: deploy" in samples  # fab's SSH sessions were seen
        journal = host.sh(f"journalctl --no-pager -o cat --since @{since[host.name]}").stdout
        assert "COMMAND=" in journal  # sudo's records are there
        for token in (held, taken):
            assert token not in samples, host.name
            assert token not in journal, host.name
        owners = host.sh(f"stat -c %U {ROOT} {ROOT}/revisions.log").stdout.split()
        assert owners[0] == owners[1], owners


def owner_token(host: TestHost, wait: bool = True) -> str:
    """The token in the host's lock owner file ("" when none, after 10 s with ``wait``)."""
    deadline = time.monotonic() + (10 if wait else 0)
    while True:
        text = host.sh(f"cat {ROOT}/.lock/owner 2>/dev/null || true").stdout
        token = next((line[6:] for line in text.splitlines() if line.startswith("token=")), "")
        if token or time.monotonic() >= deadline:
            return token
        time.sleep(0.1)
