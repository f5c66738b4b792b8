"""pytest wiring: test hosts from ``tests/hostkit.py``, markers, and what was skipped and why.

Fixtures:

* ``make_hosts(n)`` -> ``n`` fresh hosts for this test, stopped when the test ends. Calls in one
  test add hosts to the same per-test kit (``make_hosts.kit``: one client key, one known_hosts).
  Without root + network namespaces, a test asking for more than one host, or marked
  ``needs_root``, is skipped with a reason that names what is missing.
* ``make_hosts(n, release="bookworm")`` -> real-systemd hosts (systemd-nspawn, tests/hosts/):
  what every test that starts, switches, stops or reads the service uses. Where they cannot
  boot (no root, no systemd-nspawn, no root filesystem and no way to build one) the test is
  skipped with the reason. ``systemd_kit(tmp, release)`` makes such a kit for module fixtures.
* ``host`` -> ``make_hosts(1)[0]``.
* ``hostkit`` -> a session-wide ``HostKit`` (for tests that only read from hosts).
* ``new_hostkit(**kw)`` -> an extra ``HostKit`` in the test's tmp dir, stopped at the end.

Every kit is also stopped at interpreter exit and on SIGTERM/SIGHUP (best effort).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from tests.hostkit import (
    MODE_ENV,
    HostKit,
    NeedsRootError,
    TestHost,
    netns_unavailable_reason,
    nspawn_unavailable_reason,
)
from tests.hosts import nspawn, rootfs

SKIP_TAG = "[hostkit]"
INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"
_LIVE_KITS: list[HostKit] = []
#: Every kit this session started (for the summary and the leftover check).
_ALL_KITS: list[HostKit] = []


def _stop_all_kits() -> None:
    """Stop every kit still running (atexit / signal path)."""
    while _LIVE_KITS:
        kit = _LIVE_KITS.pop()
        with contextlib.suppress(Exception):
            kit.stop()


def _forget(kit: HostKit) -> None:
    with contextlib.suppress(ValueError):
        _LIVE_KITS.remove(kit)


atexit.register(_stop_all_kits)


def _install_signal_handlers() -> None:
    """On SIGTERM/SIGHUP stop the hosts, then die of the signal as before."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)

        def handler(num: int, frame: FrameType | None, previous: Any = previous) -> None:
            _stop_all_kits()
            if callable(previous):
                previous(num, frame)
                return
            signal.signal(num, signal.SIG_DFL)
            os.kill(os.getpid(), num)

        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(signum, handler)


def missing_for_netns() -> str | None:
    """What keeps hostkit from using network namespaces here (``None``: nothing)."""
    if os.environ.get(MODE_ENV, "").strip().lower() == "loopback":
        return f"{MODE_ENV}=loopback"
    return netns_unavailable_reason()


def pytest_configure(config: pytest.Config) -> None:
    """Register markers and the signal handlers."""
    config.addinivalue_line(
        "markers", "integration: runs against real SSH hosts (tests/integration)"
    )
    config.addinivalue_line(
        "markers", "needs_root: needs root and network namespaces (hostkit netns mode)"
    )
    _install_signal_handlers()
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # Started as a background job of a non-interactive shell (`bash .ci/run &`), which
        # ignores SIGINT for it: every fab a test starts would inherit that and never see the
        # Ctrl-C the tests send it, nor would `_thread.interrupt_main` reach Python's handler.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        os.environ[SHARED_CACHE] = tempfile.mkdtemp(prefix="fabdeploy-test-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller removes the run's shared cache (`fab_env`)."""
    if not hasattr(config, "workerinput") and os.environ.get(SHARED_CACHE):
        shutil.rmtree(os.environ.pop(SHARED_CACHE), ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration as ``integration``."""
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


#: Releases whose root filesystem could not be built this session, and why (tried once).
_ROOTFS_FAILED: dict[str, str] = {}


def systemd_kit(workdir: Path, release: str = "bookworm") -> HostKit:
    """A real-systemd kit (registered for teardown); skips the caller where none can boot
    (`require_release`)."""
    require_release(release)
    kit = HostKit(workdir, mode="nspawn", release=release)
    _LIVE_KITS.append(kit)
    _ALL_KITS.append(kit)
    return kit


def require_release(release: str) -> None:
    """Skip the caller unless real-systemd hosts of ``release`` can boot here: root,
    systemd-nspawn, and its root filesystem (built here if missing, once per session; a
    failed build skips every test needing that release, saying why)."""
    reason = nspawn_unavailable_reason(release) or _ROOTFS_FAILED.get(release)
    if reason is None and not rootfs.is_ready(release):
        try:
            rootfs.build(release)
        except (rootfs.RootfsError, OSError, subprocess.SubprocessError) as exc:
            reason = _ROOTFS_FAILED[release] = f"building its root filesystem failed: {exc}"
    if reason:
        pytest.skip(f"{SKIP_TAG} real-systemd {release} hosts cannot boot here: {reason}")


#: The environment variable naming this run's shared cache (made by the controller).
SHARED_CACHE = "FABDEPLOY_TEST_CACHE"


def fab_env(shared_cache: bool = True) -> dict[str, str]:
    """The environment a test runs ``fab`` in: this checkout's tasks first on PYTHONPATH, the
    test's venv first on PATH, and no FABDEPLOY_* setting leaking in from the caller but
    FABDEPLOY_CACHE_DIR: the run's one cache of wheelhouses and test venvs, shared by every
    test's project as checkouts share it (``shared_cache=False``: the project's own, for the
    tests of what is cached when)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABDEPLOY_")}
    if shared_cache and os.environ.get(SHARED_CACHE):
        env["FABDEPLOY_CACHE_DIR"] = os.environ[SHARED_CACHE]
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def stop_kit(kit: HostKit) -> None:
    """Stop ``kit`` and forget it."""
    try:
        kit.stop()
    finally:
        _forget(kit)


def leftovers() -> list[str]:
    """Hosts of this session's kits that still run, or left a cgroup, veth, netns or mount."""
    found: list[str] = []
    routes = subprocess.run(
        ["ip", "route", "show", "table", "all"], capture_output=True, text=True, check=False
    ).stdout.split()
    for kit in _ALL_KITS:
        if kit.subnet and kit.mode != "loopback" and kit.subnet in routes:
            found.append(f"route {kit.subnet} of kit {kit.run_id}")
        for host in kit.hosts:
            if host.mode == "nspawn":
                paths = [*nspawn.cgroup_dirs(host.machine), Path(f"/sys/class/net/{host.veth}")]
                found += [str(p) for p in paths if p.exists()]
                if os.path.ismount(host.root / "fs"):
                    found.append(f"overlay mounted at {host.root / 'fs'}")
            elif host.mode == "netns" and Path(f"/run/netns/{host.netns}").exists():
                found.append(f"network namespace {host.netns}")
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop what is still running; a test host left behind fails the session. Under
    pytest-xdist a worker hands its hosts, figures and leftovers to the controller."""
    _stop_all_kits()
    left = [*session.config.stash.get(_LEFT_KEY, []), *leftovers()]  # workers' first
    if left:
        session.config.stash[_LEFT_KEY] = left
        session.exitstatus = 1
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["hostkit"] = json.dumps(
            {"kinds": _host_counts(), "figures": _FIGURES, "left": left}
        )


def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist (controller): gather what a worker reported in its sessionfinish."""
    data = json.loads(getattr(node, "workeroutput", {}).get("hostkit", "{}") or "{}")
    for what, count in data.get("kinds", {}).items():
        _WORKER_KINDS[what] = _WORKER_KINDS.get(what, 0) + count
    _FIGURES.extend(data.get("figures", []))
    if data.get("left"):
        node.config.stash[_LEFT_KEY] = [*node.config.stash.get(_LEFT_KEY, []), *data["left"]]


_LEFT_KEY = pytest.StashKey[list]()
#: Figures tests measured (request loops during deploys), printed in the run's summary.
_FIGURES: list[str] = []


def figure(line: str) -> None:
    """Record a measured figure for the summary at the end of the run."""
    _FIGURES.append(line)


#: Hosts the pytest-xdist workers booted, by kind (controller only).
_WORKER_KINDS: dict[str, int] = {}


def _host_kinds() -> list[str]:
    """One line per kind of host this session (and its workers) booted, with how many."""
    kinds = dict(_WORKER_KINDS)
    for what, count in _host_counts().items():
        kinds[what] = kinds.get(what, 0) + count
    return [f"  {count} x {what}" for what, count in kinds.items()]


def _host_counts() -> dict[str, int]:
    """Hosts this process booted, by kind."""
    kinds: dict[str, int] = {}
    for kit in _ALL_KITS:
        for host in kit.hosts:
            if host.mode == "nspawn":
                what = f"real systemd: Debian {host.release} ({host.systemd}, {host.python})"
            elif host.mode == "netns":
                what = "stand-in: netns + sshd + docker-systemctl-replacement"
            else:
                what = "stand-in: one unprivileged sshd on 127.0.0.1"
            kinds[what] = kinds.get(what, 0) + 1
    return kinds


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say which hosts ran, which tests were skipped for lack of them, and what was left."""
    kinds = _host_kinds()
    if kinds:
        terminalreporter.write_sep("-", "hosts")
        terminalreporter.write_line("hostkit: hosts this run started:")
        for line in kinds:
            terminalreporter.write_line(line)
    if _FIGURES:
        terminalreporter.write_sep("-", "figures")
        for line in _FIGURES:
            terminalreporter.write_line(f"  {line}")
    left = config.stash.get(_LEFT_KEY, [])
    if left:
        terminalreporter.write_line(f"hostkit: FAILED: test hosts left behind: {left}")

    skipped = [r for r in terminalreporter.stats.get("skipped", []) if SKIP_TAG in _skip_reason(r)]
    missing = missing_for_netns()
    if skipped:
        terminalreporter.write_sep("-", "hostkit")
        terminalreporter.write_line(
            f"hostkit: {len(skipped)} test(s) skipped for lack of hosts this machine can start:"
        )
        for report in skipped:
            reason = _skip_reason(report).replace("Skipped: ", "").replace(SKIP_TAG, "").strip()
            terminalreporter.write_line(f"  SKIPPED {report.nodeid}: {reason}")
    elif missing:
        terminalreporter.write_line(
            f"hostkit: loopback mode ({missing}); no test was skipped for it"
        )
    else:
        terminalreporter.write_line(
            "hostkit: root + network namespaces + systemd-nspawn; no test skipped for lack of hosts"
        )


class HostFactory:
    """``make_hosts(n)``: fresh hosts for one test, all in one kit (``.kit``)."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
        self._request = request
        self._tmp = tmp_path_factory
        self._kits: dict[str | None, HostKit] = {}
        self._last: str | None = None

    @property
    def kit(self) -> HostKit:
        """The kit of this test's last ``make_hosts`` call (a stand-in kit if none yet)."""
        return self._kit_for(self._last)

    def _kit_for(self, release: str | None) -> HostKit:
        if release not in self._kits:
            if release is None:
                kit = HostKit(self._tmp.mktemp("hosts"))
                _LIVE_KITS.append(kit)
                _ALL_KITS.append(kit)
            else:
                kit = systemd_kit(self._tmp.mktemp(f"hosts-{release}"), release)
            self._kits[release] = kit
        return self._kits[release]

    def __call__(self, n: int = 1, release: str | None = None) -> list[TestHost]:
        """Start ``n`` more hosts for this test (skip if this machine cannot).

        ``release`` (bookworm, trixie) asks for real-systemd hosts of that Debian release.
        """
        needs_root = self._request.node.get_closest_marker("needs_root") is not None
        missing = missing_for_netns()
        if release is None and missing and (n > 1 or needs_root):
            what = f"{n} hosts need" if n > 1 else "this test needs"
            pytest.skip(f"{SKIP_TAG} {what} root and network namespaces; missing: {missing}")
        self._last = release
        try:
            return self._kit_for(release).start(n)
        except NeedsRootError as exc:
            pytest.skip(f"{SKIP_TAG} {exc}")

    def stop(self) -> None:
        """Stop this test's hosts."""
        for kit in self._kits.values():
            stop_kit(kit)


@pytest.fixture
def make_hosts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostFactory]:
    """Factory: ``make_hosts(n)`` -> n fresh hosts, stopped at the end of the test."""
    factory = HostFactory(request, tmp_path_factory)
    yield factory
    factory.stop()


@pytest.fixture
def host(make_hosts: HostFactory) -> TestHost:
    """One fresh host for this test."""
    return make_hosts(1)[0]


@pytest.fixture(scope="session")
def hostkit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostKit]:
    """A kit shared by the whole session; its hosts are stopped at session end."""
    kit = HostKit(tmp_path_factory.mktemp("hostkit"))
    _LIVE_KITS.append(kit)
    _ALL_KITS.append(kit)
    yield kit
    try:
        kit.stop()
    finally:
        _forget(kit)


@pytest.fixture
def new_hostkit(tmp_path: Path) -> Iterator[Any]:
    """Factory for extra kits (``new_hostkit(mode=..., run_id=...)``), stopped at test end."""
    kits: list[HostKit] = []

    def make(**kw: Any) -> HostKit:
        kit = HostKit(tmp_path / f"kit{len(kits)}", **kw)
        kits.append(kit)
        _LIVE_KITS.append(kit)
        _ALL_KITS.append(kit)
        return kit

    yield make
    for kit in kits:
        try:
            kit.stop()
        finally:
            _forget(kit)
