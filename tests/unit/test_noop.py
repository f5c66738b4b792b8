"""The one no-op rule: ``deploy`` stops with "no change" exactly where ``plan`` says "no
change", a worker-only host (no web process, so no gunicorn running) included."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from invoke import Context

from tasks import config
from tasks.engine.flow import Flow
from tasks.host.facts import Facts
from tasks.steps import noop, planning

REV = "0123456789ab"
TAGS = SimpleNamespace()  # the rule never reads the tags


class FakeHost(SimpleNamespace):
    """A host stand-in the fan-out can key its results by (hashable, by identity)."""

    __hash__ = object.__hash__


def settings(tmp_path: Path) -> config.Settings:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text(
        "APP_NAME=shop\nHOSTS=web1,jobs1\nROLE_WEB=web1\nROLE_WORKER=jobs1\n"
        "PROCESS_WORKER=celery worker\n"
    )
    return config.build("staging", tmp_path)


def facts(revision: str = REV, running: bool = True) -> Facts:
    return Facts("CPython 3.11", "3.11", "R1", TAGS, revision=revision, running=running)  # type: ignore[arg-type]


def deploy_says(s: config.Settings, found: dict[str, Facts], build: str, drifted: str) -> bool:
    """What the deploy's compare step decides (True: no change, it stops)."""
    said: list[str] = []
    hosts = [SimpleNamespace(name=name, output=SimpleNamespace(say=said.append)) for name in found]
    flow = Flow(Context(), s, hosts)  # type: ignore[arg-type]
    flow.build = SimpleNamespace(revision=build, content="")  # type: ignore[assignment]
    for name, f in found.items():
        state = flow.at(name)
        state.facts, state.served = f, "R1"
        state.drift = ["a file"] if name == drifted else None  # type: ignore[assignment]
    stops = noop.already_serving(flow)
    assert stops == (flow.results() == {"web1": "no change, serving R1", "jobs1": "no change, serving R1"})  # fmt: skip
    return stops


def plan_says(
    s: config.Settings,
    found: dict[str, Facts],
    build: str,
    drifted: str,
    monkeypatch: pytest.MonkeyPatch,
) -> bool:
    """What ``fab plan`` shows (True: "no change" on every host)."""

    def plan_host(c: object, host: FakeHost, b: object, f: Facts) -> planning.HostPlan:
        return planning.HostPlan(
            host.name, "R1", f.revision, build, True, 0, False, "d", True, [],
            stale=["shop-worker.service"] if host.name == drifted else [],
        )  # fmt: skip

    monkeypatch.setattr(planning, "plan_host", plan_host)
    hosts = [FakeHost(name=name, settings=s) for name in found]
    built = SimpleNamespace(revision=build, outputs=None, content="")
    plans = planning.make_plan(Context(), s, hosts, built, found)  # type: ignore[arg-type]
    assert len({p.change for p in plans}) == 1  # one answer for the fleet
    return not plans[0].change


@pytest.mark.parametrize(
    ("web1", "jobs1", "build", "drifted", "unchanged"),
    [
        # the worker-only host runs no gunicorn: the revision is all it needs
        (facts(), facts(running=False), REV, "", True),
        (facts(), facts(), REV, "", True),
        (facts(running=False), facts(), REV, "", False),  # the web host's service is down
        (facts(), facts("fedcba987654", running=False), REV, "", False),  # the worker's is old
        (facts(), facts(running=False), REV, "jobs1", False),  # setup's files changed there
        (facts(), facts(running=False), REV + "-dirty", "", False),  # always deployed
    ],
)
def test_plan_and_deploy_agree_on_no_change(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    web1: Facts,
    jobs1: Facts,
    build: str,
    drifted: str,
    unchanged: bool,
) -> None:
    s = settings(tmp_path)
    found = {"web1": web1, "jobs1": jobs1}
    built = SimpleNamespace(revision=build, content="")
    assert noop.nothing_to_deploy(s, found, built, [drifted] if drifted else []) is unchanged
    assert deploy_says(s, found, build, drifted) is unchanged
    assert plan_says(s, found, build, drifted, monkeypatch) is unchanged


@pytest.mark.parametrize(
    ("served", "build", "unchanged"),
    [
        # another commit of the same files and packages: nothing to deploy
        (("fedcba987654", "c0ffee"), (REV, "c0ffee"), True),
        # a dirty tree with what the host serves, byte for byte: nothing either
        ((REV, "c0ffee"), (REV + "-dirty", "c0ffee"), True),
        (("fedcba987654", "c0ffee"), (REV, "beef"), False),  # the content differs
        # the same commit, other content (BUILD_COMMAND's outputs, a new resolved set)
        ((REV, "c0ffee"), (REV, "beef"), False),
        (("fedcba987654", ""), (REV, "c0ffee"), False),  # a release made before the digest
        ((REV, ""), (REV + "-dirty", ""), False),  # a dirty tree's name is no evidence
    ],
)
def test_the_content_digest_decides_over_the_commit(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    served: tuple[str, str],
    build: tuple[str, str],
    unchanged: bool,
) -> None:
    s = settings(tmp_path)
    host = Facts("CPython 3.11", "3.11", "R1", TAGS, revision=served[0], content=served[1], running=True)  # type: ignore[arg-type]  # fmt: skip
    found = {"web1": host, "jobs1": host}
    built = SimpleNamespace(revision=build[0], content=build[1])
    assert noop.nothing_to_deploy(s, found, built, []) is unchanged
    said: list[str] = []
    hosts = [SimpleNamespace(name=name, output=SimpleNamespace(say=said.append)) for name in found]
    flow = Flow(Context(), s, hosts)  # type: ignore[arg-type]
    flow.build = built  # type: ignore[assignment]
    flow.say = said.append  # type: ignore[method-assign]
    for name, f in found.items():
        flow.at(name).facts, flow.at(name).served = f, "R1"
    assert noop.already_serving(flow) is unchanged
    if unchanged and served[0] != build[0]:
        assert said == [
            f"no change: revision {build[0]} is made of the same files and packages as revision "
            f"{served[0]}, which the hosts serve: nothing it changed is part of the release "
            "(nothing restarted; --force deploys it again)"
        ]


def test_plan_says_what_each_host_restarts_and_how(tmp_path: Path) -> None:
    s = settings(tmp_path)  # web1 serves the web, jobs1 runs the worker
    assert planning.restarts_on(s, "web1") == [
        "shop.service: USR2 handover in its switch round (no request refused)"
    ]
    assert planning.restarts_on(s, "jobs1") == [
        "shop-worker.service: restarted once every host switched (TERM, up to STOP_TIMEOUT="
        f"{s.stop_timeout}s, then KILL)"
    ]
    plan = planning.HostPlan("web1", "R1", "a", "b", True, 0, False, "d", True, [])
    plan.restarts = planning.restarts_on(s, "web1")
    assert "restart shop.service: USR2 handover in its switch round (no request refused)" in planning.lines(plan)  # fmt: skip


def test_plan_shows_a_settings_only_change_in_clear_and_as_a_change() -> None:
    plan = planning.HostPlan(
        "web1", "R1", REV, REV, True, 0, False, "d", True, [],
        files={"/etc/shop/settings": '-DEBUG="0"\n+DEBUG="1"\n'},
        settings_changes=["DEBUG: 0 -> 1", "SITE=https://shop.example"],
    )  # fmt: skip
    assert plan.drifted  # the settings file differs: a deploy of the same revision is no no-op
    assert (
        "settings: DEBUG: 0 -> 1; SITE=https://shop.example: deploy installs them with the "
        "switch (a graceful reload)"
    ) in planning.lines(plan)


def test_a_drifted_host_of_the_same_content_is_deployed_naming_what_it_serves(
    tmp_path: Path,
) -> None:
    s = settings(tmp_path)
    host = Facts("CPython 3.11", "3.11", "R1", TAGS, revision="fedcba987654", content="c0ffee", running=True)  # type: ignore[arg-type]  # fmt: skip
    said: list[str] = []
    hosts = [SimpleNamespace(name=name, output=SimpleNamespace(say=said.append)) for name in ("web1", "jobs1")]  # fmt: skip
    flow = Flow(Context(), s, hosts)  # type: ignore[arg-type]
    flow.build = SimpleNamespace(revision=REV, content="c0ffee")  # type: ignore[assignment]
    flow.say = said.append  # type: ignore[method-assign]
    for name in ("web1", "jobs1"):
        flow.at(name).facts, flow.at(name).served = host, "R1"
    flow.at("web1").drift = ["a file"]  # type: ignore[assignment]
    assert noop.already_serving(flow) is False
    assert said == [
        f"revision {REV} is made of the same files and packages as revision fedcba987654, which "
        "the hosts serve: nothing it changed is part of the release, but setup's files changed "
        "on web1: deploying it again applies them (graceful restarts)"
    ]
