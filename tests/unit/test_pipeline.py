"""The runner of the step lists (`tasks.engine.runner`): order, hooks around every step, the
``failed`` hook, refused hook points, failures per host (`fanout.GroupResult`), and a
`BATCHES` step run batch after batch with its hooks and its `Undo`."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from invoke import Context

from tasks import config
from tasks.core.errors import FabdeployError, HostError
from tasks.engine import hooks, runner, summary
from tasks.engine import step as engine_step
from tasks.engine.flow import Flow
from tasks.engine.step import BATCHES, HOSTS, LAST, LOCAL, Step, Undo
from tasks.ssh import fanout
from tasks.steps import lists, planning
from tests.unit.test_deploy import FlowHost as Host


def make_flow(
    tmp_path: Path,
    extra: str = "",
    action: str = "deploy",
    names: tuple[str, ...] = ("web1", "web2"),
) -> Flow:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\n" + extra)
    settings = config.build("staging", tmp_path)
    hosts = [Host(name, settings) for name in names]
    flow = Flow(Context(), settings, hosts, action)  # type: ignore[arg-type]
    flow.output = SimpleNamespace(line=lambda *a, **k: None, say=lambda *a: None)  # type: ignore[assignment]
    return flow


def attach(flow: Flow, point: str, seen: list[str], *, once: bool = False) -> None:
    """A fabfile hook at ``point`` that records where it ran."""

    def hook(ctx: hooks.HookContext) -> None:
        seen.append(f"{point}@{ctx.host.name if ctx.host else 'local'}")

    add(flow, hooks.Hook(point, hook, once))


def add(flow: Flow, hook: hooks.Hook) -> None:
    """Attach ``hook`` as `hooks.add` does: in the invoke config's fabdeploy.hooks."""
    current = dict(config.state(flow.c).get("hooks") or {})
    current[hook.point] = [*current.get(hook.point, []), hook]
    flow.c.config["fabdeploy"] = {**config.state(flow.c), "hooks": current}


def steps(seen: list[str], fail: str = "") -> tuple[Step, ...]:
    def local(flow: Flow) -> None:
        seen.append("build")

    def on_host(name: str):  # type: ignore[no-untyped-def]
        def work(flow: Flow, host: Host) -> None:
            seen.append(f"{name}@{host.name}")
            if f"{name}@{host.name}" == fail:
                raise HostError(host.name, f"{name} broke")

        return work

    def recover(flow: Flow, done: fanout.GroupResult) -> str:
        seen.append("recover " + ",".join(h.name for h in done.failed))
        return "nothing was switched"

    return (
        Step("build", local, LOCAL),
        Step("upload", on_host("upload"), HOSTS, recover=recover, phase="prepare"),
        Step("cleanup", on_host("cleanup"), HOSTS),
        Step("unlock", on_host("unlock"), HOSTS, always=True),
    )


def test_hooks_run_around_every_step_and_the_always_step_runs_last(tmp_path: Path) -> None:
    flow, seen = make_flow(tmp_path), []
    flow.settings = flow.settings.__class__(**{**vars(flow.settings), "parallel": 1})
    for point in ("before_deploy", "before_build", "after_build", "after_deploy"):
        attach(flow, point, seen)
    attach(flow, "before_cleanup", seen)
    attach(flow, "after_upload", seen, once=True)
    runner.execute(flow, steps(seen), lists.known_points() | {"before_cleanup"})
    assert seen == [
        "before_deploy@local",
        "before_build@local",
        "build",
        "after_build@local",
        "upload@web1",
        "upload@web2",
        "after_upload@web1",  # once: on the primary host, after every host
        "before_cleanup@web1",
        "cleanup@web1",
        "before_cleanup@web2",
        "cleanup@web2",
        "after_deploy@local",  # still under the lock
        "unlock@web1",
        "unlock@web2",
    ]
    assert [s.name for s in flow.steps] == ["build", "upload", "cleanup", "unlock"]


def test_a_failed_host_step_recovers_names_its_phase_and_runs_the_failed_hook_last(
    tmp_path: Path,
) -> None:
    flow, seen = make_flow(tmp_path), []
    got: list[hooks.HookContext] = []
    add(flow, hooks.Hook("failed", lambda ctx: got.append(ctx)))
    with pytest.raises(FabdeployError) as info:
        runner.execute(flow, steps(seen, fail="upload@web2"))
    assert "prepare failed on 1 host(s): [web2]" in str(info.value)
    assert str(info.value).endswith("nothing was switched")
    assert "recover web2" in seen and "cleanup@web1" not in seen
    assert seen[-2:] == ["unlock@web1", "unlock@web2"]  # unlocked before the failed hook
    [ctx] = got
    assert "upload broke" in ctx.error and ctx.serving == {
        "web1": "nothing",
        "web2": "prepare failed",
    }
    assert flow.results() == {"web2": "prepare failed"}


def test_the_environment_files_failed_hook_runs_locally_with_the_error(tmp_path: Path) -> None:
    out = tmp_path / "told"
    flow = make_flow(tmp_path, f'HOOK_FAILED=echo "$FABDEPLOY_ERROR|$FABDEPLOY_SERVING" > {out}\n')
    with pytest.raises(FabdeployError):
        runner.execute(flow, steps([], fail="upload@web1"))
    error, _, serving = out.read_text().strip().partition("|")
    assert "upload broke" in error
    assert serving == "web1=prepare failed web2=nothing"


def test_a_failing_failed_hook_never_hides_the_error(tmp_path: Path) -> None:
    flow = make_flow(tmp_path, "HOOK_FAILED=exit 3\n")
    with pytest.raises(FabdeployError, match="upload broke"):
        runner.execute(flow, steps([], fail="upload@web1"))


def test_a_hook_at_an_unknown_point_stops_the_command_before_any_step(tmp_path: Path) -> None:
    flow, seen = make_flow(tmp_path), []
    attach(flow, "before_swtich", seen)
    with pytest.raises(FabdeployError, match=r"hook before_swtich .*did you mean before_switch"):
        runner.execute(flow, steps(seen), lists.known_points())
    assert seen == []


def test_a_once_hook_at_a_local_point_is_refused(tmp_path: Path) -> None:
    flow, seen = make_flow(tmp_path), []
    attach(flow, "before_build", seen, once=True)
    with pytest.raises(FabdeployError, match="runs once, locally, already"):
        runner.execute(flow, steps(seen))
    assert seen == []


def test_skip_says_why_and_when_leaves_a_step_out(tmp_path: Path) -> None:
    flow, seen = make_flow(tmp_path), []
    said: list[str] = []
    flow.say = said.append  # type: ignore[method-assign]
    listed = (
        Step("test", lambda r: seen.append("test"), LOCAL, skip=lambda r: "--skip-tests"),
        Step("migrate", lambda r: seen.append("migrate"), LOCAL, when=lambda r: False),
    )
    attach(flow, "before_test", seen)
    runner.execute(flow, listed)
    assert seen == [] and said == ["test: skipped (--skip-tests)"]


def test_a_step_that_finds_nothing_to_do_ends_the_list_without_after_hooks(tmp_path: Path) -> None:
    flow, seen = make_flow(tmp_path), []
    attach(flow, "after_deploy", seen)

    def compare(flow: Flow) -> None:
        flow.done = True

    listed = (
        Step("compare", compare, LOCAL),
        *steps(seen)[1:],
    )
    runner.execute(flow, listed)
    assert seen == ["unlock@web1", "unlock@web2"]  # no upload, no after_deploy; unlocked


@pytest.mark.parametrize("names", [("web1",), ("web1", "web2")])
def test_the_always_step_unlocks_when_a_resume_found_every_host_done(
    tmp_path: Path, names: tuple[str, ...]
) -> None:
    """`deploy --resume` after a switch that finished on its own drops every host from the
    flow (`resuming.resumed_everywhere`): the locked hosts are still unlocked, primary last."""
    flow, seen = make_flow(tmp_path, names=names), []
    locked = list(flow.hosts)

    def compare(flow: Flow) -> None:
        flow.hosts.clear()  # every host serves the resumed release already
        flow.done = True

    def unlock(flow: Flow, host: Host) -> None:
        seen.append(f"unlock@{host.name}")

    listed = (
        Step("compare", compare, LOCAL),
        Step("unlock", unlock, HOSTS, hosts=lambda f: locked, always=True, primary=LAST),
    )
    runner.execute(flow, listed)
    assert seen == [f"unlock@{name}" for name in reversed(names)]


def test_setup_hooks_are_host_points_of_its_step() -> None:
    local, on_hosts = engine_step.points("setup", lists.SETUP)
    assert "before_setup" in on_hosts and "after_setup" in on_hosts
    assert "before_setup" not in local and "failed" in local


def test_every_command_s_points_are_known_and_the_old_after_upload_follows_install() -> None:
    known = lists.known_points()
    for point in ("before_lock", "after_smoke", "before_cleanup", "after_record", "failed"):
        assert point in known
    install = next(s for s in lists.DEPLOY if s.name == "install")
    upload = next(s for s in lists.DEPLOY if s.name == "upload")
    assert install.after_points == ("after_install", "after_upload") and upload.after_points == ()
    for point in ("after_upload", "before_switch", "after_switch", "before_setup", "before_test"):
        assert point in known


def test_host_results_name_every_failed_host() -> None:
    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    a, b = Named("a"), Named("b")
    done = fanout.GroupResult({a: "ok", b: HostError("b", "disk full")})
    assert len(done.failed) == 1 and [h.name for h in done.failed] == ["b"]
    assert done.succeeded == {a: "ok"} and list(done) == [a, b]  # every host, in order
    assert str(done.error("upload", "Stopped")).endswith(
        "upload failed on 1 host(s): [b] disk full. Stopped"
    )
    assert not fanout.GroupResult({a: None}).failed


def test_the_failed_hook_environment_is_the_local_one(tmp_path: Path) -> None:
    os.environ["FABDEPLOY_TEST_MARK"] = "kept"
    try:
        out = tmp_path / "env"
        flow = make_flow(tmp_path, f'HOOK_FAILED=echo "$FABDEPLOY_TEST_MARK" > {out}\n')
        with pytest.raises(FabdeployError):
            runner.execute(flow, steps([], fail="upload@web1"))
        assert out.read_text().strip() == "kept"
    finally:
        del os.environ["FABDEPLOY_TEST_MARK"]


def test_the_architecture_page_lists_the_deploy_steps_in_order() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    table = text.split("## The steps", 1)[1].split("\n\n")[2]
    names = [line.split("`")[1] for line in table.splitlines()[2:]]
    assert names == [step.name for step in lists.DEPLOY]
    wheres = [line.split("|")[2].strip() for line in table.splitlines()[2:]]
    expected = {s.name: s.where for s in lists.DEPLOY}
    expected["processes"] = "hosts with companion processes"  # HOSTS, narrowed by `hosts`
    assert wheres == list(expected.values())


def test_plan_prints_the_deploy_s_steps_from_the_list(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    line = planning.steps_line(flow.settings)
    assert line == "steps: " + ", ".join(s.name for s in lists.DEPLOY if s.name != "migrate")
    with_migration = make_flow(tmp_path, "MIGRATE_COMMAND=python manage.py migrate\n")
    assert "install, migrate, smoke" in planning.steps_line(with_migration.settings)


def test_a_failing_once_hook_after_a_step_fails_that_step_and_recovers(tmp_path: Path) -> None:
    flow, seen = make_flow(tmp_path), []

    def broken(ctx: hooks.HookContext) -> None:
        raise RuntimeError("collectstatic broke")

    add(flow, hooks.Hook("after_upload", broken, once=True))
    with pytest.raises(FabdeployError, match=r"prepare failed on 1 host\(s\): \[web1\].*"):
        runner.execute(flow, steps(seen))
    assert "recover web1" in seen and "cleanup@web1" not in seen  # removed, stopped
    assert seen[-2:] == ["unlock@web1", "unlock@web2"]


# --- a BATCHES step: the runner runs the batches ------------------------------------------


def batched(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    seen: list[str],
    extra: str = "",
    fail: str = "",
) -> tuple[Flow, Step]:
    """A flow over web1, web2, web3 (one at a time: PARALLEL=1) and a `BATCHES` step ``switch``
    whose work, undo and saves record in ``seen``."""
    flow = make_flow(tmp_path, "PARALLEL=1\n" + extra, names=("web1", "web2", "web3"))
    monkeypatch.setattr(summary, "save", lambda *a, **k: seen.append("saved"))

    def record(what: str):  # type: ignore[no-untyped-def]
        def work(flow: Flow, host: Host) -> None:
            seen.append(f"{what}@{host.name}")
            if f"{what}@{host.name}" == fail:
                raise HostError(host.name, f"{what} broke")

        return work

    undo = Undo(back=record("back"), unreached=record("unreached"), reached=record("reached"))
    return flow, Step("switch", record("switch"), BATCHES, undo=undo)


def test_a_batches_step_runs_batch_by_batch_with_its_hooks_and_saves_after_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    flow, step = batched(tmp_path, monkeypatch, seen, "SWITCH_BATCH=1,2\n")
    said: list[str] = []
    flow.say = said.append  # type: ignore[method-assign]
    for point in ("before_switch", "after_switch"):
        attach(flow, point, seen)
        add(flow, hooks.Hook(point, lambda ctx, p=point: seen.append(f"once {p}"), once=True))
    runner.perform(flow, step)
    assert seen == [
        "once before_switch",  # on the primary host, before the first batch
        "before_switch@web1", "switch@web1", "after_switch@web1", "saved",
        "before_switch@web2", "switch@web2", "after_switch@web2",
        "before_switch@web3", "switch@web3", "after_switch@web3", "saved",
        "once after_switch",  # after the last
    ]  # fmt: skip
    assert said == ["switch: batch 1 of 2 (the canary): web1", "switch: batch 2 of 2: web2, web3"]
    assert flow.rounds == (("web1",), ("web2", "web3"))


def test_a_failed_batch_goes_back_and_undoes_the_hosts_before_and_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    flow, step = batched(tmp_path, monkeypatch, seen, "SWITCH_BATCH=1\n", fail="switch@web2")
    for name in ("web1", "web2", "web3"):
        flow.at(name).served = "R1"
    flow.at("web1").result, flow.at("web2").result = "serving R2", "back on R1"
    with pytest.raises(FabdeployError) as info:
        runner.perform(flow, step)
    assert seen == [
        "switch@web1", "saved", "switch@web2",
        "back@web2", "unreached@web3", "reached@web1",  # the batch, the later, the earlier
    ]  # fmt: skip
    assert str(info.value).endswith(
        "switch (batch 2 of 3) failed on 1 host(s): [web2] switch broke. That batch went back "
        "to what it served. now serving: web1 serving R2, web2 back on R1, web3 R1"
    )


def test_a_failed_first_batch_says_no_other_host_was_switched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    flow, step = batched(tmp_path, monkeypatch, seen, "SWITCH_BATCH=1\n", fail="switch@web1")
    with pytest.raises(FabdeployError, match=r"served\. No other host was switched\. now serving"):
        runner.perform(flow, step)
    assert seen == ["switch@web1", "back@web1", "unreached@web2", "unreached@web3"]


def test_a_failing_once_hook_before_a_batches_step_switches_no_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    flow, step = batched(tmp_path, monkeypatch, seen)

    def broken(ctx: hooks.HookContext) -> None:
        raise RuntimeError("migration broke")

    add(flow, hooks.Hook("before_switch", broken, once=True))
    with pytest.raises(FabdeployError, match=r"\[web1\] hook before_switch broken failed"):
        runner.perform(flow, step)
    assert seen == ["unreached@web1", "unreached@web2", "unreached@web3"]
    assert flow.rounds == ()  # no round started


def test_a_failing_once_hook_after_a_batches_step_records_every_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    flow, step = batched(tmp_path, monkeypatch, seen, "SWITCH_BATCH=100%\n")

    def broken(ctx: hooks.HookContext) -> None:
        raise RuntimeError("warm-up broke")

    add(flow, hooks.Hook("after_switch", broken, once=True))
    with pytest.raises(FabdeployError, match="warm-up broke"):
        runner.perform(flow, step)
    assert seen == [
        "switch@web1", "switch@web2", "switch@web3", "saved",
        "reached@web1", "reached@web2", "reached@web3",  # every host serves it: recorded
    ]  # fmt: skip


def test_ctrl_c_during_a_batch_stops_there_and_undoes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    flow, step = batched(tmp_path, monkeypatch, seen, "SWITCH_BATCH=1\n")

    def interrupted(flow: Flow, host: Host) -> None:
        seen.append(f"switch@{host.name}")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.perform(flow, replace(step, work=interrupted))
    assert seen == ["switch@web1"]  # the host's switch finishes or goes back by itself


def test_the_rollback_s_switch_has_no_hooks_and_the_deploy_s_has_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    switches = {
        name: next(s for s in steps_ if s.name == "switch")
        for name, steps_ in (("deploy", lists.DEPLOY), ("rollback", lists.ROLLBACK))
    }
    assert switches["deploy"].before_points == ("before_switch",)
    assert switches["deploy"].after_points == ("after_switch",)
    assert switches["rollback"].before_points == switches["rollback"].after_points == ()
    deploy_undo, rollback_undo = switches["deploy"].undo, switches["rollback"].undo
    assert deploy_undo is not None and rollback_undo is not None
    assert (deploy_undo.back, deploy_undo.reached) == (rollback_undo.back, rollback_undo.reached)
    assert deploy_undo.unreached is not rollback_undo.unreached  # a rollback removes no release
    seen: list[str] = []
    flow, step = batched(tmp_path, monkeypatch, seen, "SWITCH_BATCH=100%\n")
    for point in ("before_switch", "after_switch"):
        attach(flow, point, seen)
        attach(flow, point, seen, once=True)
    runner.perform(flow, replace(step, before=(), after=()))
    assert seen == ["switch@web1", "switch@web2", "switch@web3", "saved"]
