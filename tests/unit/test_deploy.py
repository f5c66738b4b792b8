"""The deploy flow's pure parts: the lock and its messages, cleanup and rollback choices,
the audit line and the timing table; the steps' order."""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks import config, lock
from tasks import deploy as deploy_module
from tasks.build import testrun
from tasks.core import local as core_local
from tasks.core.clock import release_name
from tasks.core.errors import FabdeployError, HostError
from tasks.core.records import Audit
from tasks.engine import hooks, runner, summary
from tasks.engine import step as engine_step
from tasks.engine.flow import Flow, Options
from tasks.host import lockfile, migrate, processes, releases, service, smoke
from tasks.steps import finish, lists, rollback, switch
from tasks.steps import prepare as steps_prepare

R = [f"20261124T0{h}0000.000Z" for h in range(1, 8)]  # seven releases, oldest first


# --- the lock ------------------------------------------------------------------------------


def owner(**kw: object) -> lockfile.LockOwner:
    values = {"user": "ann@laptop", "machine": "laptop", "pid": 4242, "since": 1000, "token": "t1"}
    values.update(kw)
    return lockfile.LockOwner(**values)  # type: ignore[arg-type]


def test_lock_owner_round_trips() -> None:
    assert lockfile.LockOwner.parse(owner().format()) == owner()
    assert lockfile.LockOwner.parse("pid=notanumber\n") is None


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (1000, "ann@laptop (pid 4242 on laptop) for 0s"),
        (1042, "ann@laptop (pid 4242 on laptop) for 42s"),
        (1065, "ann@laptop (pid 4242 on laptop) for 1m05s"),
        (1000 + 7260, "ann@laptop (pid 4242 on laptop) for 2h01m"),
    ],
)
def test_describe_lock_names_holder_and_age(now: int, expected: str) -> None:
    assert lockfile.describe_lock(owner(), now) == expected


def test_describe_lock_without_owner_file() -> None:
    assert "unknown deploy" in lockfile.describe_lock(None, 5)


def test_stale_only_when_the_holder_ran_here_and_is_gone() -> None:
    assert lockfile.is_stale(owner(), "laptop", lambda pid: False)
    assert not lockfile.is_stale(owner(), "laptop", lambda pid: True)
    assert not lockfile.is_stale(owner(), "other-machine", lambda pid: False)
    assert not lockfile.is_stale(None, "laptop", lambda pid: False)


def test_pid_alive_sees_this_process() -> None:
    assert core_local.pid_alive(os.getpid())
    assert not core_local.pid_alive(0)


class FakeHost:
    """Answers `script` calls from a queue and records the env each got."""

    def __init__(self, answers: list[str], tmp_path: Path) -> None:
        (tmp_path / "config").mkdir(exist_ok=True)
        (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\n")
        self.settings = config.build("staging", tmp_path)
        self.answers = list(answers)
        self.name = "web1"
        self.app_user = "deploy"
        self.conn = SimpleNamespace(user="deploy")
        self.envs: list[dict] = []  # env and private values of each script
        self.privates: list[set[str]] = []  # the names of its private values
        self.said: list[str] = []

    def script(self, body: str, **kw):  # type: ignore[no-untyped-def]
        self.envs.append({**(kw.get("env") or {}), **(kw.get("private") or {})})
        self.privates.append(set(kw.get("private") or {}))
        return SimpleNamespace(stdout=self.answers.pop(0), stderr="", failed=False)

    def say(self, text: str) -> None:
        self.said.append(text)


def held_by(holder: lockfile.LockOwner, now: int = 1030) -> str:
    return f"held\nnow={now}\n{holder.format()}"


def test_take_lock_acquires(tmp_path: Path) -> None:
    host = FakeHost(["acquired\n"], tmp_path)
    lockfile.take_lock(host, owner(), break_lock=False)  # type: ignore[arg-type]
    assert host.envs[0]["LOCK"] == "/srv/shop/.lock" and host.envs[0]["FORCE"] == "no"
    assert "token=t1" in host.envs[0]["OWNER"] and host.privates[0] == {"OWNER"}  # stdin


def test_a_held_lock_fails_at_once_naming_holder_and_age(tmp_path: Path) -> None:
    holder = owner(user="bob@ci", machine="ci-runner", pid=77)
    host = FakeHost([held_by(holder)], tmp_path)
    with pytest.raises(HostError) as info:
        lockfile.take_lock(host, owner(), break_lock=False)  # type: ignore[arg-type]
    message = str(info.value)
    assert "deploy lock held by bob@ci (pid 77 on ci-runner) for 30s" in message
    assert "`fab staging unlock`" in message and "`fab staging deploy --break-lock`" in message
    assert len(host.envs) == 1  # nothing was forced


def test_break_lock_says_who_held_it(tmp_path: Path) -> None:
    holder = owner(user="bob@ci", machine="ci-runner", pid=77)
    host = FakeHost([held_by(holder), "acquired\n"], tmp_path)
    lockfile.take_lock(host, owner(), break_lock=True)  # type: ignore[arg-type]
    assert host.said == [
        "breaking the deploy lock held by bob@ci (pid 77 on ci-runner) for 30s (--break-lock)"
    ]
    assert host.envs[1]["FORCE"] == "yes"


def test_a_lock_of_a_dead_fab_on_this_machine_is_broken_saying_so(tmp_path: Path) -> None:
    me = owner(machine="laptop", pid=os.getpid())
    dead = owner(machine="laptop", pid=2**22 + 12345, token="old")  # no such pid
    host = FakeHost([held_by(dead), "acquired\n"], tmp_path)
    lockfile.take_lock(host, me)  # type: ignore[arg-type]
    assert "is stale: that fab is no longer running; breaking it" in host.said[0]
    assert host.envs[1]["FORCE"] == "yes"


def test_release_lock_keeps_a_lock_someone_else_took(tmp_path: Path) -> None:
    other = owner(user="bob@ci", token="theirs")
    host = FakeHost([f"now=1010\n{other.format()}kept=yes\n"], tmp_path)
    held = lockfile.release_lock(host, owner())  # type: ignore[arg-type]
    assert held.startswith("bob@ci")
    assert host.envs[0]["TOKEN"] == "t1" and host.privates[0] == {"TOKEN"}  # on stdin
    assert "left in place" in host.said[0]


# --- releases ------------------------------------------------------------------------------


def test_cleanup_keeps_the_newest() -> None:
    assert releases.releases_to_remove(R, R[-1], R[-2], 3) == R[:4]


def test_cleanup_never_removes_current_or_previous_after_a_rollback() -> None:
    doomed = releases.releases_to_remove(R, current=R[1], previous=R[0], keep=3)
    assert R[0] not in doomed and R[1] not in doomed
    assert doomed == R[2:6]  # kept: current, previous and the newest
    assert len(R) - len(doomed) == 3


def test_cleanup_with_few_releases_removes_nothing() -> None:
    assert releases.releases_to_remove(R[:2], R[1], R[0], 5) == []
    assert releases.releases_to_remove([], "", "", 2) == []


def test_previous_release_is_the_newest_older_than_current() -> None:
    assert releases.previous_release(R, R[3]) == R[2]
    assert releases.previous_release(R, R[0]) == ""
    assert releases.previous_release(R, R[3], good={R[0], R[1], R[3]}) == R[1]


def test_good_releases_come_from_ok_audit_lines() -> None:
    log = "\n".join(
        Audit("t", action, release, "rev", "ann@laptop", result).format()
        for action, release, result in [
            ("deploy", R[0], "ok"),
            ("deploy", R[1], "failed"),
            ("rollback", R[2], "ok"),
        ]
    )
    assert releases.good_releases(log + "\nnot an audit line\n") == {R[0], R[2]}
    assert releases.good_releases("") is None


def test_inventory_previous_skips_releases_that_never_served() -> None:
    log = Audit("t", "deploy", R[0], "r", "u", "ok").format() + "\n"
    log += Audit("t", "deploy", R[2], "r", "u", "ok").format() + "\n"
    found = releases.Inventory({R[0]: "a", R[1]: "a", R[2]: "b"}, [], R[2], ["a", "b"], log)
    assert found.previous() == R[0]  # R[1] was unpacked by a killed deploy, never served
    bare = releases.Inventory({R[0]: "a", R[1]: "a", R[2]: "b"}, [], R[2], ["a", "b"], "")
    assert bare.previous() == R[1]


def test_release_names_sort_by_time() -> None:
    import datetime as dt

    early = release_name(dt.datetime(2026, 11, 24, 8, 0, 0, 5000, tzinfo=dt.timezone.utc))
    late = release_name(dt.datetime(2026, 11, 24, 8, 0, 0, 6000, tzinfo=dt.timezone.utc))
    assert early == "20261124T080000.005Z" and early < late


# --- the flow ------------------------------------------------------------------------------


def test_summary_has_a_row_per_host_with_steps_in_flow_order() -> None:
    class FakeHost:
        def __init__(self, name: str) -> None:
            self.name, self.connections, self.sessions, self.output = name, 1, 7, None

    web1, web2 = FakeHost("web1"), FakeHost("web2")
    flow = Flow(None, None, [web1, web2])  # type: ignore[arg-type]
    flow.steps = lists.DEPLOY  # the summary's columns follow the list being run
    flow.timings = {
        "local": {"build": 1.5, "test": 0.25},
        "web1": {"upload": 0.5, "lock": 0.1},
        "web2": {"lock": 0.2},
    }
    flow.at("web1").result, flow.at("web2").result = "serving R1", "prepare failed"
    lines = summary.text(flow).splitlines()
    assert lines[0].split() == [
        "host",
        "lock",
        "build",
        "test",
        "upload",
        "total",
        "ssh",
        "conn/sess",
        "result",
    ]
    assert lines[1].split() == ["local", "1.50", "0.25", "1.75"]
    assert lines[2].split() == ["web1", "0.10", "0.50", "0.60", "1/7", "serving", "R1"]
    assert lines[3].split() == ["web2", "0.20", "0.20", "1/7", "prepare", "failed"]


def test_deploy_reads_as_the_list_of_steps() -> None:
    names = [step.name for step in lists.DEPLOY]
    order = [
        names.index(name)
        for name in (
            "lock",
            "check",
            "build",
            "compare",
            "test",  # after the no-op check: a deploy that changes nothing runs no tests
            "upload",
            "smoke",
            "switch",
            "cleanup",
            "record",
        )
    ]
    assert order == sorted(order)
    local, _ = engine_step.points("deploy", lists.DEPLOY)
    assert local[:2] == ("before_deploy", "after_deploy")  # around the whole list
    assert lists.DEPLOY[-1].name == "unlock" and lists.DEPLOY[-1].always
    source = inspect.getsource(deploy_module.deploy.body)
    body = source[source.index("def deploy") :].strip().splitlines()
    assert len(body) < 30, "the flow stays a short list of named steps"


def test_task_options_have_help() -> None:
    assert set(deploy_module.deploy.help) == {
        "skip-tests",
        "allow-dirty",
        "break-lock",
        "lock-wait",
        "fleet",
        "per-host",
        "force",
        "summary-json",
        "ref",
        "resume",
        "roles",
    }
    assert set(deploy_module.rollback.help) == {"release", "to", "fleet", "per-host"}
    for task in (deploy_module.deploy, deploy_module.rollback, lock.unlock):
        assert re.match(r"^[A-Z].*\.$", task.__doc__.strip().splitlines()[0])


# --- migrations and companion processes in the flow ----------------------------------------


class FlowHost:
    """A host that only has a name, settings and output: the flow's steps are patched."""

    def __init__(self, name: str, settings: config.Settings) -> None:
        self.name, self.settings = name, settings
        self.output = SimpleNamespace(line=lambda *a, **k: None, say=lambda *a: None)
        self.connections = self.sessions = 0

    def say(self, text: str) -> None:
        pass


def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, fail: str = ""):  # type: ignore[no-untyped-def]
    """A Flow over web1, web2 (web + worker) and jobs1 (worker only), its steps recording."""
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text(
        "APP_NAME=shop\nROLE_WEB=web1,web2\nROLE_WORKER=web2,jobs1\nPROCESS_WORKER=celery worker\n"
        + extra
    )
    settings = config.build("staging", tmp_path)
    hosts = [FlowHost(name, settings) for name in ("web1", "web2", "jobs1")]
    done: list[str] = []

    def step(name: str):  # type: ignore[no-untyped-def]
        def record(*args: object, **kwargs: object) -> None:
            host = next(a for a in args if isinstance(a, FlowHost))
            done.append(f"{name} {host.name}")
            if f"{name} {host.name}" == fail:
                raise HostError(host.name, f"{name} failed")

        return record

    for name, function in (("undo", "remove_unswitched"), ("record", "record_result"), ("back", "go_back")):  # fmt: skip
        for module in (steps_prepare, switch, finish, rollback):
            if hasattr(module, function):
                monkeypatch.setattr(module, function, step(name))
    works = {"upload": step("upload"), "install": step("install")}
    undo = engine_step.Undo(back=step("back"), unreached=step("undo"), reached=step("record"))
    steps = tuple(
        replace(s, work=works.get(s.name, s.work), undo=s.undo and undo) for s in lists.DEPLOY
    )
    monkeypatch.setattr(lists, "DEPLOY", steps)
    monkeypatch.setattr(migrate, "migrate_release", step("migrate"))
    monkeypatch.setattr(smoke, "smoke", step("smoke"))
    monkeypatch.setattr(service, "switch", step("switch"))
    monkeypatch.setattr(processes, "link_current", step("link"))
    monkeypatch.setattr(processes, "restart", step("processes"))
    monkeypatch.setattr(hooks, "run_on", lambda *a, **k: None)
    flow = Flow(SimpleNamespace(config={}), settings, hosts)  # type: ignore[arg-type]
    for h in hosts:
        flow.at(h).release = "R2"
    return flow, done


def prepare(flow: Flow) -> None:
    """The deploy's prepare steps (upload, install, migrate, smoke), as the runner runs them."""
    for step in lists.DEPLOY:
        if step.name in ("upload", "install", "migrate", "smoke"):
            runner.perform(flow, step)


def restart_processes(flow: Flow) -> None:
    """The deploy's processes step, as the runner runs it."""
    runner.perform(flow, next(s for s in lists.DEPLOY if s.name == "processes"))


def switch_hosts(flow: Flow) -> None:
    """The deploy's switch step, as the runner runs it: batch after batch."""
    runner.perform(flow, next(s for s in lists.DEPLOY if s.name == "switch"))


def test_the_migration_runs_once_on_the_primary_before_any_smoke_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, done = fleet(tmp_path, monkeypatch, "MIGRATE_COMMAND=python manage.py migrate\n")
    prepare(flow)
    assert [d for d in done if d.startswith("migrate")] == ["migrate web1"]
    first_smoke = min(i for i, d in enumerate(done) if d.startswith("smoke"))
    last_install = max(i for i, d in enumerate(done) if d.startswith("install"))
    assert last_install < done.index("migrate web1") < first_smoke
    assert "smoke jobs1" not in done  # no web process there


def test_a_failed_migration_stops_before_any_smoke_or_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, done = fleet(tmp_path, monkeypatch, "MIGRATE_COMMAND=x\n", fail="migrate web1")
    with pytest.raises(Exception, match=r"migrate failed on 1 host.*No host was switched"):
        prepare(flow)
    assert not [d for d in done if d.startswith(("smoke", "switch"))]
    assert sorted(d for d in done if d.startswith("undo")) == [
        "undo jobs1",
        "undo web1",
        "undo web2",
    ]


def test_processes_restart_after_every_switch_and_not_after_a_failed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, done = fleet(tmp_path, monkeypatch, "PRIMARY_HOST=web2\n")
    switch_hosts(flow)
    restart_processes(flow)
    assert done == [
        "switch web1", "switch web2", "link jobs1", "processes web2", "processes jobs1",
    ]  # fmt: skip
    flow, done = fleet(tmp_path, monkeypatch, "", fail="switch web2")
    with pytest.raises(Exception, match="switch"):
        switch_hosts(flow)
    assert not [d for d in done if d.startswith("processes")]  # still on the old release


def test_a_process_that_does_not_come_back_fails_naming_its_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, done = fleet(tmp_path, monkeypatch, "", fail="processes jobs1")
    for h in flow.hosts:
        flow.at(h).result = "serving R2"
    with pytest.raises(Exception, match=r"processes failed on 1 host\(s\): \[jobs1\]"):
        restart_processes(flow)
    assert sorted(d for d in done if d.startswith("record")) == [
        "record jobs1", "record web1", "record web2",
    ]  # fmt: skip


def test_a_failing_suite_after_compare_leaves_nothing_to_resume_and_uploads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, done = fleet(tmp_path, monkeypatch, "")
    written: list[str] = []
    flow.build = SimpleNamespace(release="R2", revision="abc", outputs=None)  # type: ignore[assignment]
    monkeypatch.setattr(
        summary, "write_json", lambda path, data, *_: written.append(data["release"])
    )
    monkeypatch.setattr(steps_prepare, "already_serving", lambda r: False)

    def failing(*args: object) -> None:
        raise FabdeployError("test step: local tests failed (exit 1)")

    monkeypatch.setattr(testrun, "run_suite", failing)
    names = [s.name for s in lists.DEPLOY]
    assert names.index("compare") + 1 == names.index("test") < names.index("upload")
    step = {s.name: s for s in lists.DEPLOY}
    runner.perform(flow, step["compare"])
    assert written == []  # the record waits for the tests
    with pytest.raises(FabdeployError, match="test step"):
        runner.perform(flow, step["test"])
    summary.save(flow, FabdeployError("x"), final=True)  # as the command's end does
    assert written == []  # never resumable (nor after a failing before_test hook)
    assert flow.at("web1").result == "not deployed, serving nothing"
    assert done == []  # nothing uploaded

    monkeypatch.setattr(testrun, "run_suite", lambda *a: 0.1)
    runner.perform(flow, step["test"])
    assert written == ["R2"]  # passed: recorded for --resume
    flow.build = SimpleNamespace(release="R3", revision="abd", outputs=None)  # type: ignore[assignment]
    flow.options = Options(skip_tests=True)
    runner.perform(flow, step["compare"])
    runner.perform(flow, step["test"])  # skipped, saying so
    assert written == ["R2", "R3"]  # with --skip-tests compare records it


def test_a_failed_rollback_batch_keeps_the_release_on_the_hosts_it_never_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollback's release is an older, good one: the hosts of the later batches keep it (a
    deploy's undo would remove it, as an unswitched new release), the failure recorded."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\nHOSTS=web1,web2\n")
    settings = config.build("staging", tmp_path)
    web2 = FlowHost("web2", settings)
    removed: list[str] = []
    recorded: list[str] = []
    monkeypatch.setattr(switch.install, "remove_release", lambda host, name: removed.append(name))
    monkeypatch.setattr(switch.service, "current_release", lambda host: "R2")
    monkeypatch.setattr(switch, "record_result", lambda f, h, result="ok": recorded.append(result))
    flow = Flow(SimpleNamespace(config={}), settings, [web2], "rollback")  # type: ignore[arg-type]
    flow.at(web2).release, flow.at(web2).served = "R1", "R2"
    undo = {s.name: s for s in lists.ROLLBACK}["switch"].undo
    assert undo is not None
    undo.unreached(flow, web2)
    assert removed == [] and recorded == ["failed"]
    assert flow.results() == {"web2": "not rolled back, serving R2"}
    deploy_undo = {s.name: s for s in lists.DEPLOY}["switch"].undo
    assert deploy_undo is not None
    deploy_undo.unreached(flow, web2)  # the deploy's: an unswitched release goes
    assert removed == ["R1"]
