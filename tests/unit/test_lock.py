"""The lock with a reason: `fab lock`, `fab lock.status`, `fab unlock` by token or as a logged
break, `deploy --lock-wait`, and the lock scripts run for real against a local directory."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from invoke import Context
from invoke.runners import Result

from tasks import config, lock
from tasks.core import output, report
from tasks.core.errors import FabdeployError, HostError
from tasks.core.paths import local_state
from tasks.core.records import Audit
from tasks.engine import hooks, runner, summary
from tasks.engine import step as engine_step
from tasks.engine.flow import Flow, Options
from tasks.engine.step import Step
from tasks.host import lockfile
from tasks.host import releases as releases_module
from tasks.ssh import host as ssh_host
from tasks.ssh import session
from tasks.steps import lists
from tests.unit.test_deploy import FakeHost, held_by, owner
from tests.unit.test_monitor import LocalConnection


def test_owner_records_reason_deploy_id_and_token() -> None:
    mine = lockfile.LockOwner.mine(deploy_id="20261203T120000.000Z-ab12", reason="db\nmigration")
    again = lockfile.LockOwner.parse(mine.format())
    assert again == mine
    assert (mine.reason, mine.deploy_id, mine.pid) == ("db migration", mine.deploy_id, os.getpid())
    assert len(mine.token) == 16
    assert lockfile.LockOwner.mine().deploy_id  # a deploy id even when none is given


def test_a_held_lock_names_its_reason_and_is_never_stale() -> None:
    held = owner(pid=0, reason="db migration")
    assert (
        lockfile.describe_lock(held, 1065)
        == 'ann@laptop (`fab lock` on laptop) for 1m05s: "db migration"'
    )
    assert not lockfile.is_stale(held, "laptop", lambda pid: False)


def test_lock_wait_waits_for_the_holder_to_go(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(lockfile, "POLL", 0.01)
    holder = owner(user="bob@ci", machine="ci", pid=77, reason="migrating")
    host = FakeHost([held_by(holder), held_by(holder), "acquired\n"], tmp_path)
    lockfile.take_lock(host, owner(), wait=30)  # type: ignore[arg-type]
    assert host.said == [
        'waiting up to 30s for the deploy lock held by bob@ci (pid 77 on ci) for 30s: "migrating"'
    ]
    assert [env["FORCE"] for env in host.envs] == ["no", "no", "no"]


def test_lock_wait_gives_up_after_its_seconds(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(lockfile, "POLL", 0.01)
    holder = owner(user="bob@ci", machine="ci", pid=77)
    host = FakeHost([held_by(holder)] * 500, tmp_path)
    with pytest.raises(HostError, match=r"held by bob@ci .* \(waited 0s\): another deploy"):
        lockfile.take_lock(host, owner(), wait=0.05)  # type: ignore[arg-type]
    assert len(host.envs) > 1


def test_a_break_is_written_to_revisions_log_in_the_same_step(tmp_path: Path) -> None:
    holder = owner(user="bob@ci", machine="ci", pid=77)
    host = FakeHost([held_by(holder), "acquired\n"], tmp_path)
    lockfile.take_lock(host, owner(), break_lock=True)  # type: ignore[arg-type]
    audit = Audit.parse(host.envs[1]["AUDIT"])
    assert audit is not None and (audit.action, audit.result) == ("break-lock", "broken")
    assert audit.detail == "bob@ci (pid 77 on ci) for 30s (--break-lock)"
    assert host.envs[0]["AUDIT"] == ""  # nothing to record when nothing is broken


# --- the scripts, for real -----------------------------------------------------------------


def local_host(tmp_path: Path, name: str = "web1") -> ssh_host.Host:
    root = tmp_path / "srv"
    root.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text(
        f"APP_NAME=shop\nHOSTS=web1\nDEPLOY_ROOT={root}\nAPP_USER=deploy\n"  # the local user
    )
    settings = config.build("staging", tmp_path)
    out = io.StringIO()
    return ssh_host.Host(LocalConnection(name), settings, output.Output(out, out))  # type: ignore[arg-type]


def audit_lines(tmp_path: Path) -> list[Audit]:
    log = tmp_path / "srv" / "revisions.log"
    text = log.read_text() if log.exists() else ""
    return [a for a in map(Audit.parse, text.splitlines()) if a]


def test_only_the_owners_token_releases_a_lock(tmp_path: Path) -> None:
    host = local_host(tmp_path)
    first, second = lockfile.LockOwner.mine(reason="one"), lockfile.LockOwner.mine(reason="two")
    lockfile.take_lock(host, first)
    with pytest.raises(HostError, match=r'deploy lock held by .*: "one"'):
        lockfile.take_lock(host, second)
    assert lockfile.release_lock(host, second)  # not its lock: left in place
    assert (tmp_path / "srv" / ".lock").is_dir()
    found = lockfile.read_lock(host)
    assert found is not None and found[0] is not None and found[0].token == first.token
    lockfile.release_lock(host, first)
    assert lockfile.read_lock(host) is None
    assert audit_lines(tmp_path) == []  # releasing one's own lock is no break


def test_break_lock_logs_who_held_it(tmp_path: Path) -> None:
    host = local_host(tmp_path)
    lockfile.take_lock(host, lockfile.LockOwner.mine(reason="one", held=True))
    lockfile.take_lock(host, lockfile.LockOwner.mine(), break_lock=True)
    [audit] = audit_lines(tmp_path)
    assert audit.action == "break-lock" and '"one" (--break-lock)' in audit.detail


def sessions(monkeypatch, host: ssh_host.Host) -> None:
    monkeypatch.setattr(session, "session", lambda c, **kw: (host.settings, [host]))


def test_fab_lock_holds_until_fab_unlock_releases_it_by_its_token(
    tmp_path: Path, monkeypatch
) -> None:
    host = local_host(tmp_path)
    sessions(monkeypatch, host)
    with pytest.raises(FabdeployError, match="say why"):
        lock.hold(Context(), reason=" ")
    lock.hold(Context(), reason="db migration")
    said = host.output.out.getvalue()  # type: ignore[attr-defined]
    assert '[web1] locked: "db migration" (lock id lock-' in said
    assert "held until `fab staging unlock`" in said
    token = lockfile.saved_token(host.settings)
    with pytest.raises(FabdeployError, match=r'held by .*`fab lock` on .*: "db migration"'):
        lockfile.take_lock(host, lockfile.LockOwner.mine())  # a deploy is stopped, naming why
    lock.status(Context())
    assert "[web1] locked by " in host.output.out.getvalue()  # type: ignore[attr-defined]
    lock.unlock(Context())
    assert "released the deploy lock held by" in host.output.out.getvalue()  # type: ignore[attr-defined]
    assert lockfile.read_lock(host) is None and audit_lines(tmp_path) == []
    assert not local_state(host.settings).lock_token.exists() and token


def test_fab_unlock_breaks_another_lock_and_logs_it(tmp_path: Path, monkeypatch) -> None:
    host = local_host(tmp_path)
    sessions(monkeypatch, host)
    theirs = lockfile.LockOwner("ops@elsewhere", "elsewhere", 4242, 1, "x", "hotfix")
    lockfile.take_lock(host, theirs)
    with pytest.raises(FabdeployError, match="unlock failed on web1"):
        lock.unlock(Context(), token="not-theirs")
    assert lockfile.read_lock(host) is not None
    lock.unlock(Context())
    said = host.output.out.getvalue()  # type: ignore[attr-defined]
    assert "removed the deploy lock held by ops@elsewhere (pid 4242 on elsewhere)" in said
    [audit] = audit_lines(tmp_path)
    assert audit.result == "broken" and audit.detail.startswith("ops@elsewhere (pid 4242")
    assert lockfile.read_lock(host) is None


# --- the deploy ----------------------------------------------------------------------------


def test_the_after_deploy_hooks_run_under_the_lock(monkeypatch) -> None:
    done: list[str] = []
    monkeypatch.setattr(hooks, "check_attached", lambda *a: None)
    monkeypatch.setattr(hooks, "run_local", lambda c, s, o, point: done.append(point))
    steps = (
        engine_step.Step(
            "lock", lambda r: done.append("lock"), engine_step.LOCAL, before=(), after=()
        ),
        engine_step.Step("unlock", lambda r: done.append("unlock"), engine_step.LOCAL, always=True),
    )
    flow = SimpleNamespace(
        action="deploy", c=None, settings=None, output=None, done=False, hosts=[]
    )
    flow.locally = lambda name, work: work(flow)
    monkeypatch.setattr(runner, "finish", lambda r, step: step.work(r))
    runner.execute(flow, steps)  # type: ignore[arg-type]
    lines = done
    locked, hook = lines.index("lock"), lines.index("after_deploy")
    assert lines.index("unlock") > hook > locked


def test_the_summary_is_written_as_json(tmp_path: Path) -> None:
    class Named:
        def __init__(self, name: str) -> None:
            self.name, self.connections, self.sessions = name, 1, 9

    flow = Flow.__new__(Flow)
    flow.action, flow.started, flow.build = "deploy", 0.0, None
    flow.owner = lockfile.LockOwner.mine(deploy_id="ID1")
    flow.options, flow.states, flow.rounds = Options(), {}, ()
    flow.settings = type("S", (), {"environment": "staging"})()  # type: ignore[assignment]
    flow.hosts = [Named("web1")]  # type: ignore[list-item]
    flow.timings = {"local": {"test": 1.23456}, "web1": {"lock": 0.1}}
    flow.at("web1").result, flow.at("web1").served, flow.at("web1").release = (
        "serving R2",
        "R1",
        "R2",
    )
    flow.output = output.Output(io.StringIO(), mask=['pa"ss\\wörd'])
    path = tmp_path / "summary.json"
    failed = FabdeployError('switch failed: hook printed pa"ss\\wörd')
    report.write_json(str(path), summary.data(flow, failed), flow.output.clean)
    data = json.loads(path.read_text())
    assert data["ok"] is False and data["id"] == "ID1"
    assert data["error"] == "switch failed: hook printed ***"
    assert data["local"] == {"steps": {"test": 1.235}}
    assert data["hosts"] == [
        {
            "host": "web1",
            "result": "serving R2",
            "served_before": "R1",
            "release": "R2",
            "steps": {"lock": 0.1},
            "ssh_connections": 1,
            "ssh_sessions": 9,
            "probes": {},
            "canary": None,
        }
    ]


def test_lock_and_unlock_take_the_dash_h_hosts_at_once(monkeypatch) -> None:
    """Under `fab -H a,b`, one call gets every host (one lock, one token); the others none."""
    seen: list[dict] = []
    monkeypatch.setattr(session, "session", lambda c, **kw: (seen.append(kw), (None, []))[1])
    lock.hold(Context(), reason="db migration")
    lock.unlock(Context())
    assert seen == [{"fleet": True}, {"fleet": True}]


def test_lock_status_json_names_holder_reason_and_id_but_never_the_token(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    host = local_host(tmp_path)
    sessions(monkeypatch, host)
    lock.status(Context(), json=True)
    [free] = json.loads(capsys.readouterr().out)
    assert free["locked"] is False and free["held_by"] == "" and free["pid"] is None
    held = lockfile.LockOwner.mine(reason="db migration", held=True, deploy_id="lock-X")
    lockfile.take_lock(host, held)
    lock.status(Context(), json=True)
    text = capsys.readouterr().out
    [item] = json.loads(text)
    assert set(item) == {
        "host", "error", "unreachable", "locked", "held_by", "user", "machine", "pid", "since",
        "age_seconds", "reason", "deploy_id",
    }  # fmt: skip
    assert (item["locked"], item["reason"], item["deploy_id"], item["pid"]) == (
        True,
        "db migration",
        "lock-X",
        0,
    )
    assert item["age_seconds"] >= 0 and "`fab lock`" in item["held_by"]
    assert held.token not in text


def test_fab_lock_locks_every_host_or_none(tmp_path: Path, monkeypatch) -> None:
    free, taken = local_host(tmp_path / "a"), local_host(tmp_path / "b", "web2")
    monkeypatch.setattr(session, "session", lambda c, **kw: (free.settings, [free, taken]))
    lockfile.take_lock(taken, lockfile.LockOwner("bob@ci", "ci", 77, 1, "theirs"))
    with pytest.raises(FabdeployError, match="no host is left locked by this command"):
        lock.hold(Context(), reason="incident")
    assert lockfile.read_lock(free) is None  # released again
    found = lockfile.read_lock(taken)
    assert found is not None and found[0] is not None and found[0].token == "theirs"
    said = taken.output.out.getvalue()  # type: ignore[attr-defined]
    assert "[web2] failed: deploy lock held by bob@ci (pid 77 on ci)" in said
    assert "[web1] lock released again" in free.output.out.getvalue()  # type: ignore[attr-defined]


# --- one owner for the fleet: the primary host first ---------------------------------------


def fleet_flow(tmp_path: Path, owner_: lockfile.LockOwner | None = None) -> Flow:
    """A deploy's `Flow` over web1 (the primary host) and web2, each a local directory."""
    web1, web2 = local_host(tmp_path / "a"), local_host(tmp_path / "b", "web2")
    web2.settings = web1.settings.__class__(
        **{**vars(web1.settings), "deploy_root": str(tmp_path / "b" / "srv")}
    )
    flow = Flow.locking(Context(), web1.settings, [web1, web2], "deploy")
    if owner_ is not None:
        flow.owner = owner_
    return flow


def locking(tried: list[str], middle: Step | None = None) -> tuple[Step, ...]:
    """The deploy's own lock and unlock steps (their order and hosts as listed), doing only
    the lock's work; ``middle`` in between (the deploy's other steps)."""
    listed = {step.name: step for step in lists.DEPLOY}

    def take(flow: Flow, host: ssh_host.Host) -> None:
        tried.append(f"lock {host.name}")
        lockfile.take_lock(host, flow.owner, wait=flow.options.lock_wait)
        flow.locked.append(host)

    def release(flow: Flow, host: ssh_host.Host) -> None:
        tried.append(f"unlock {host.name}")
        lockfile.release_lock(host, flow.owner)

    rest = (middle,) if middle else ()
    return (
        replace(listed["lock"], work=take),
        *rest,
        replace(listed["unlock"], work=release),
    )


def test_the_lock_is_taken_on_the_primary_host_first_and_released_there_last(
    tmp_path: Path,
) -> None:
    flow, tried = fleet_flow(tmp_path), []
    runner.execute(flow, locking(tried), lists.known_points())
    assert tried == ["lock web1", "lock web2", "unlock web2", "unlock web1"]
    assert [lockfile.read_lock(h) for h in flow.hosts] == [None, None]


def test_a_deploy_that_loses_the_primary_host_touches_no_other_and_names_the_holder(
    tmp_path: Path,
) -> None:
    flow, tried = fleet_flow(tmp_path), []
    web1, web2 = flow.hosts
    other = lockfile.LockOwner.mine(deploy_id="20261207T130000.000Z-ab12")
    lockfile.take_lock(web1, other)  # the other deploy won the primary host
    with pytest.raises(FabdeployError) as info:
        runner.execute(flow, locking(tried), lists.known_points())
    assert tried == ["lock web1"]  # web2 never tried: nothing to release there
    message = str(info.value)
    assert "lock failed on 1 host(s): [web1] deploy lock held by " in message
    assert "another deploy is running (deploy id 20261207T130000.000Z-ab12)" in message
    assert lockfile.read_lock(web2) is None
    found = lockfile.read_lock(web1)
    assert found is not None and found[0] is not None and found[0].token == other.token


def test_a_deploy_that_finds_another_host_held_releases_what_it_took(tmp_path: Path) -> None:
    flow, tried = fleet_flow(tmp_path), []
    web1, web2 = flow.hosts
    lockfile.take_lock(web2, lockfile.LockOwner.mine(reason="db backup", held=True))
    with pytest.raises(FabdeployError, match=r"\[web2\] deploy lock held by .*db backup"):
        runner.execute(flow, locking(tried), lists.known_points())
    assert tried == ["lock web1", "lock web2", "unlock web1"]
    assert lockfile.read_lock(web1) is None  # released again
    found = lockfile.read_lock(web2)
    assert found is not None and found[0] is not None and found[0].reason == "db backup"


def race(tmp_path: Path) -> tuple[list[int], list[str], list[Flow]]:
    """Two deploys of the same two hosts started at once; which proceeded past the lock (the
    winner works until the other has ended), and the others' errors."""
    runs = [fleet_flow(tmp_path), fleet_flow(tmp_path)]  # the same two directories
    done = [threading.Event(), threading.Event()]
    start = threading.Barrier(2)
    proceeded: list[int] = []
    errors: list[str] = []

    def deploy_(i: int) -> None:
        def hold(flow: Flow) -> None:
            proceeded.append(i)
            done[1 - i].wait(timeout=10)

        try:
            start.wait()
            middle = Step("build", hold, engine_step.LOCAL)
            runner.execute(runs[i], locking([], middle), lists.known_points())
        except FabdeployError as exc:
            errors.append(str(exc))
        finally:
            done[i].set()

    threads = [threading.Thread(target=deploy_, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return proceeded, errors, runs


def test_of_two_concurrent_deploys_exactly_one_proceeds_every_time(tmp_path: Path) -> None:
    for round_ in range(10):
        proceeded, errors, runs = race(tmp_path / str(round_))
        assert len(proceeded) == 1, (round_, errors)
        [error] = errors
        assert "deploy lock held by" in error and "another deploy is running" in error
        assert [lockfile.read_lock(h) for h in runs[0].hosts] == [None, None]


def test_with_lock_wait_the_other_deploy_queues_on_the_primary_host_then_follows(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(lockfile, "POLL", 0.05)
    first, second = fleet_flow(tmp_path), fleet_flow(tmp_path)
    second.options = Options(lock_wait=10)
    lockfile.take_lock(first.hosts[0], first.owner)
    lockfile.take_lock(first.hosts[1], first.owner)
    tried: list[str] = []
    waiter = threading.Thread(
        target=runner.execute, args=(second, locking(tried), lists.known_points())
    )
    waiter.start()
    time.sleep(0.5)
    assert tried == ["lock web1"]  # queued on the primary host
    lockfile.release_lock(first.hosts[1], first.owner)  # as the unlock step: the primary host last
    lockfile.release_lock(first.hosts[0], first.owner)
    waiter.join(timeout=10)
    assert tried == ["lock web1", "lock web2", "unlock web2", "unlock web1"]
    said = second.hosts[0].output.out.getvalue()  # type: ignore[attr-defined]
    assert "[web1] waiting up to 10s for the deploy lock held by" in said


def test_a_deliberate_lock_says_who_when_and_why_not_another_deploy(tmp_path: Path) -> None:
    host = local_host(tmp_path)
    lockfile.take_lock(host, lockfile.LockOwner("ann@laptop", "laptop", 0, 0, "t", "db backup"))
    with pytest.raises(HostError) as info:
        lockfile.take_lock(host, lockfile.LockOwner.mine())
    message = str(info.value)
    assert "deploy lock held by ann@laptop (`fab lock` on laptop) for " in message
    assert re.search(r"since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: locked on purpose", message)
    assert ': "db backup" since ' in message
    assert "`fab staging unlock` releases it" in message
    assert "another deploy" not in message


def test_every_command_that_locks_takes_the_primary_host_first_and_frees_it_last() -> None:
    for steps in (lists.DEPLOY, lists.ROLLBACK, lists.RELEASE):
        listed = {step.name: step for step in steps}
        assert listed["lock"].primary == engine_step.FIRST
        assert listed["unlock"].primary == engine_step.LAST


def test_only_the_commands_that_lock_mint_a_deploy_id_and_a_lock_owner(
    tmp_path: Path, monkeypatch
) -> None:
    from tasks import deploy, setup, upload
    from tasks.engine import flow as engine_flow
    from tasks.engine.resume import Record

    host = local_host(tmp_path)
    sessions(monkeypatch, host)
    built: list[Flow] = []
    for module in (setup, deploy, upload):
        monkeypatch.setattr(module, "execute", lambda flow, *a: built.append(flow))
    minted: list[str] = []
    monkeypatch.setattr(engine_flow, "new_id", lambda: minted.append("id") or "ID9")
    setup.all_(Context())
    assert minted == [] and built[0].owner is None and built[0].id == ""  # setup locks nothing
    deploy.deploy(Context())
    deploy.rollback(Context())
    upload.release(Context())
    assert minted == ["id"] * 3
    assert [(f.action, f.id, f.owner.deploy_id if f.owner else "") for f in built[1:]] == [
        ("deploy", "ID9", "ID9"),
        ("rollback", "ID9", "ID9"),
        ("release", "ID9", "ID9"),
    ]
    resumed = Record("ID1", "R1", "abc", "", False, {})
    again = Flow.locking(Context(), host.settings, [host], "deploy", Options(resume=resumed))
    assert again.id == "ID1" and again.owner is not None and again.owner.deploy_id == "ID1"
    assert len(minted) == 3  # --resume continues the deploy it resumes: the same id


class Recorded(LocalConnection):
    """A `LocalConnection` whose commands run with every program they may start behind a
    shim that records its argv (``log``), as ``ps`` on a host would show it."""

    PROGRAMS = ("bash", "sh", "cat", "rm", "mkdir", "mv", "tee", "grep", "date", "sleep", "base64", "id", "stat", "sudo", "env", "printf", "test")  # fmt: skip

    def __init__(self, tmp_path: Path) -> None:
        super().__init__("web1")
        self.log = tmp_path / "argv.log"
        self.bin = tmp_path / "shims"
        self.bin.mkdir()
        for name in self.PROGRAMS:
            real = shutil.which(name)
            if real:
                shim = self.bin / name
                shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {self.log}\nexec {real} "$@"\n')
                shim.chmod(0o755)

    def run(self, command: str, **kwargs: object) -> Result:
        with self.log.open("a") as log:
            log.write(command + "\n")  # the argv of the session's own bash -c
        path = os.environ["PATH"]
        os.environ["PATH"] = f"{self.bin}:{path}"
        try:
            return super().run(command, **kwargs)
        finally:
            os.environ["PATH"] = path


def test_no_command_line_holds_the_lock_token(tmp_path: Path) -> None:
    """The token goes on the scripts' stdin and is compared by bash itself: neither the
    session's command nor any program the lock's scripts start has it in its argv."""
    host = local_host(tmp_path)
    host.conn = Recorded(tmp_path)
    first, second = lockfile.LockOwner.mine(reason="one"), lockfile.LockOwner.mine(reason="two")
    lockfile.take_lock(host, first, then=("echo checked", {}))
    with pytest.raises(HostError, match="deploy lock held by"):
        lockfile.take_lock(host, second)
    lockfile.release_lock(host, second)  # not its token: kept
    assert lockfile.read_lock(host) is not None
    record = releases_module.audit_program(host, Audit(1, "deploy", "R1", "abc", "me", "ok"))
    lockfile.release_lock(host, first, first=[("record", *record)])
    assert lockfile.read_lock(host) is None and [a.release for a in audit_lines(tmp_path)] == ["R1"]
    lockfile.take_lock(host, second)
    lockfile.take_lock(host, first, break_lock=True)
    lockfile.release_lock(host, token=first.token)
    seen = host.conn.log.read_text()
    for token in (first.token, second.token):
        assert token not in seen
    assert "rm -rf" in seen and "mkdir" in seen and "tee -a" in seen  # the shims saw them


def test_the_lock_is_written_by_the_owner_of_the_deploy_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """APP_USER another user: the SSH user, owning the root, takes and releases the lock and
    writes revisions.log itself, no sudo; only a root the app user owns (before the ownership
    model) makes it go through ``sudo -u APP_USER``."""
    host = local_host(tmp_path)
    host.settings = replace(host.settings, app_user="web")
    shims = tmp_path / "bin"
    shims.mkdir()
    calls = tmp_path / "sudo.log"
    (shims / "sudo").write_text(f'#!/bin/sh\nprintf "%s\\0" "$*" >> {calls}\nshift 4\nexec "$@"\n')
    (shims / "sudo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    line = Audit(1, "deploy", "R1", "abc", "me", "ok")
    tokens = []

    def cycle() -> None:
        mine = lockfile.LockOwner.mine()
        tokens.append(mine.token)
        lockfile.take_lock(host, mine)
        record = releases_module.audit_program(host, line)
        lockfile.release_lock(host, mine, first=[("record", *record)])
        assert lockfile.read_lock(host) is None

    cycle()
    assert not calls.exists() and len(audit_lines(tmp_path)) == 1
    if os.geteuid() != 0:
        return  # a root another user owns needs root to make
    os.chown(tmp_path / "srv", 65534, -1)
    cycle()
    said = calls.read_text().split("\0")[:-1]
    assert said and all(call.startswith("-n -u web -- ") for call in said)
    assert len(audit_lines(tmp_path)) == 2 and not [t for t in tokens if t in "".join(said)]
