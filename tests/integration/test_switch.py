"""The switch waits for ready workers, on real-systemd hosts (Debian 12 and 13).

An app that takes 3 s to import (tests/integration/apps.py's `write_slow_app`) is deployed,
then redeployed once while a request loop runs, for each worker class: sync, gthread and
uvicorn's. gunicorn forks a worker before it imports the app; the switch must keep the old
workers serving until every new one has loaded it (its ready marker, docs/run.md#ready-workers):
no request fails, and none takes 1 s longer than the app's own latency (the loop's median).
Each worker class is an app of its own on the host (APP_NAME slow-<class>, a port each).
bench/switch_stress.py runs the same redeploy many times and prints the figures.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.host import service
from tests.conftest import fab_env, figure, missing_for_netns, stop_kit, systemd_kit
from tests.hostkit import HostKit, TestHost
from tests.integration.apps import SLOW_WORKER_CLASSES, write_slow_app
from tests.integration.test_deploy import APP, APP_USERS, PORT, RequestLoop, Site, write_project

#: Seconds the app sleeps at import.
IMPORT_SECONDS = 3.0
#: No request may take longer than the app's own latency plus this (seconds).
SLOW = 1.0
#: The port each worker class's app listens on.
PORTS = {name: PORT + 100 + number for number, name in enumerate(SLOW_WORKER_CLASSES)}


@dataclass(frozen=True)
class Redeploy:
    """What a request loop saw during one redeploy."""

    requests: int
    failures: list[str]
    median: float  # the app's own latency: the loop's median, seconds
    slowest: float  # seconds
    served: str  # the last version answered
    output: str  # fab's output

    @property
    def extra(self) -> float:
        """How much longer the slowest request took than the app's own latency."""
        return self.slowest - self.median


def slow_site(host: TestHost, kit: HostKit, project: Path, worker_class: str) -> Site:
    """A project deploying the slow app of ``worker_class`` to ``host`` as its own app."""
    release = host.release or "bookworm"
    app_user = APP_USERS.get(release, "")  # "": the default, a user named after APP_NAME
    write_project(project, host, kit, app_user)
    env_file = project / "config" / "staging.env"
    text = env_file.read_text()
    for old, new in (
        (f"APP_NAME={APP}\n", f"APP_NAME=slow-{worker_class}\n"),
        (f":{PORT}\n", f":{PORTS[worker_class]}\n"),
        ("HEALTH_TIMEOUT=10\n", "HEALTH_TIMEOUT=30\n"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    env_file.write_text(text + SLOW_WORKER_CLASSES[worker_class] + "TEST_COMMAND=\n")
    site = Site(host, project, fab_env(), kit, app_user or f"slow-{worker_class}")
    slow_app(site, worker_class, "1.0.0")
    return site


def slow_app(site: Site, worker_class: str, version: str) -> None:
    """Write the slow app of ``worker_class`` serving ``version`` into the project."""
    app = write_slow_app(site.project / "app", version, worker_class, IMPORT_SECONDS)
    (app / "secrets.env").write_text("GREETING=hello-from-a-secret\n")


def redeploy(site: Site, worker_class: str, version: str) -> Redeploy:
    """Redeploy the slow app as ``version`` while a request loop runs; what the loop saw."""
    slow_app(site, worker_class, version)
    with RequestLoop(site.host.url(PORTS[worker_class], "/"), limit=300) as loop:
        done = site.fab("deploy", timeout=300)
    return Redeploy(
        requests=loop.ok + len(loop.failures),
        failures=loop.failures,
        median=statistics.median(loop.latencies) if loop.latencies else 0.0,
        slowest=max(loop.latencies, default=0.0),
        served=loop.versions[-1] if loop.versions else "",
        output=done.stdout + done.stderr,
    )


def master(site: Site, worker_class: str) -> int:
    """The app's gunicorn master, from its pidfile (in /run, a tmpfs of the host's)."""
    return int(site.sh(f"cat /run/slow-{worker_class}/gunicorn.pid"))


def markers(site: Site, worker_class: str) -> list[str]:
    """The ready markers beside the app's pidfile."""
    return sorted(
        site.sh(f"cd /run/slow-{worker_class} && ls -d ready.* 2>/dev/null || true").split()
    )


def workers_of(site: Site, master: int) -> list[str]:
    """``ready.<pid>.<start time>`` for each worker of ``master``, as the host's /proc says."""
    out = site.sh(
        f"for kid in $(cat /proc/{master}/task/{master}/children); do "
        'stat=$(cat /proc/$kid/stat); set -- ${stat##*) }; echo "ready.$kid.${20}"; done'
    )
    return sorted(out.split())


@pytest.fixture(scope="module", params=sorted(APP_USERS))
def host(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestHost, HostKit]]:
    """A fresh real-systemd host of one Debian release, torn down after the module."""
    missing = missing_for_netns()
    if missing:
        pytest.skip(f"[hostkit] deploying needs root and network namespaces; missing: {missing}")
    kit = systemd_kit(tmp_path_factory.mktemp(f"switch-{request.param}"), request.param)
    try:
        yield kit.start(1)[0], kit
    finally:
        stop_kit(kit)


@pytest.fixture(scope="module")
def deployed(
    host: tuple[TestHost, HostKit], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Site]]:
    """The slow apps set up and deployed on the module's host, by worker class (on demand)."""
    sites: dict[str, Site] = {}

    def get(worker_class: str) -> Site:
        if worker_class not in sites:
            project = tmp_path_factory.mktemp(f"slow-{worker_class}") / "project"
            site = slow_site(*host, project, worker_class)
            site.fab("setup")
            site.fab("deploy")
            sites[worker_class] = site
        return sites[worker_class]

    yield get  # type: ignore[misc]


@pytest.mark.parametrize("worker_class", list(SLOW_WORKER_CLASSES))
def test_a_slow_app_is_switched_with_no_failed_or_slow_request(
    host: tuple[TestHost, HostKit], deployed: Callable[[str], Site], worker_class: str
) -> None:
    if host[0].release != "bookworm" and worker_class != "uvicorn":
        pytest.skip(
            "CI redeploys every worker class on Debian 12 and uvicorn's (the slowest to load) on "
            "Debian 13; bench/switch_stress.py runs all of them on both, 10 times each"
        )
    site = deployed(worker_class)
    first = master(site, worker_class)
    seen = redeploy(site, worker_class, "1.1.0")
    where = f"Debian {site.host.release}, {worker_class} workers"
    figure(
        f"{where}: slow-import redeploy: {seen.requests} requests, {len(seen.failures)} failed, "
        f"slowest {seen.slowest:.3f}s = the app's {seen.median:.3f}s + {seen.extra:.3f}s"
    )
    assert seen.failures == [] and seen.requests > 20, seen.failures[:3]
    assert seen.extra < SLOW, f"{where}: a request took {seen.slowest:.3f}s"
    assert seen.served == "1.1.0" and master(site, worker_class) != first
    assert "workers ready (the app loaded) after" in seen.output
    # every worker of the new master wrote its marker; the old workers' are gone
    assert markers(site, worker_class) == workers_of(site, master(site, worker_class))


def test_a_conf_rendered_before_the_markers_still_switches_and_says_so(
    host: tuple[TestHost, HostKit], deployed: Callable[[str], Site]
) -> None:
    if host[0].release != "bookworm":
        pytest.skip("the fallback does not depend on the release: shown on Debian 12")
    site = deployed("sync")
    conf = "/etc/slow-sync/gunicorn.conf.py"
    # as an older fabdeploy rendered it (the file rewritten in place: owner and mode kept)
    site.sh(f"grep -v {service.READY_HOOK} {conf} > /tmp/conf && cat /tmp/conf > {conf}")
    old = master(site, "sync")
    with RequestLoop(site.host.url(PORTS["sync"], "/")) as loop:
        reload = site.fab("run.reload")
    assert "has no ready-marker hooks (rendered by an older fabdeploy)" in reload.stdout
    assert "run `fab setup` to render it again" in reload.stdout
    assert f"switched: master {old} -> {master(site, 'sync')}" in reload.stdout
    assert loop.ok > 0 and loop.versions[-1] == loop.versions[0]
    site.fab("setup")  # renders it again: the next switch waits for ready workers
    assert "workers ready (the app loaded)" in site.fab("run.reload").stdout
