"""pytest wiring: test hosts from ``tests/hostkit.py``, markers, and what was skipped and why.

Fixtures:

* ``make_hosts(n)`` -> ``n`` fresh hosts for this test, stopped when the test ends. Calls in one
  test add hosts to the same per-test kit (``make_hosts.kit``: one client key, one known_hosts).
  Without root + network namespaces, a test asking for more than one host, or marked
  ``needs_root``, is skipped with a reason that names what is missing.
* ``host`` -> ``make_hosts(1)[0]``.
* ``hostkit`` -> a session-wide ``HostKit`` (for tests that only read from hosts).
* ``new_hostkit(**kw)`` -> an extra ``HostKit`` in the test's tmp dir, stopped at the end.

Every kit is also stopped at interpreter exit and on SIGTERM/SIGHUP (best effort).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
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
)

SKIP_TAG = "[hostkit]"
INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"
_LIVE_KITS: list[HostKit] = []


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


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say which tests were skipped for lack of root / network namespaces."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if SKIP_TAG in _skip_reason(r)]
    missing = missing_for_netns()
    if skipped:
        terminalreporter.write_sep("-", "hostkit")
        terminalreporter.write_line(
            f"hostkit: {len(skipped)} test(s) skipped for lack of root/network namespaces "
            f"({missing or 'see reasons'}):"
        )
        for report in skipped:
            terminalreporter.write_line(f"  SKIPPED {report.nodeid}")
    elif missing:
        terminalreporter.write_line(
            f"hostkit: loopback mode ({missing}); no test was skipped for it"
        )
    else:
        terminalreporter.write_line(
            "hostkit: netns mode (root + network namespaces); nothing skipped for lack of them"
        )


class HostFactory:
    """``make_hosts(n)``: fresh hosts for one test, all in one kit (``.kit``)."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
        self._request = request
        self._tmp = tmp_path_factory
        self._kit: HostKit | None = None

    @property
    def kit(self) -> HostKit:
        """This test's kit (created on first use)."""
        if self._kit is None:
            self._kit = HostKit(self._tmp.mktemp("hosts"))
            _LIVE_KITS.append(self._kit)
        return self._kit

    def __call__(self, n: int = 1) -> list[TestHost]:
        """Start ``n`` more hosts for this test (skip if this machine cannot)."""
        needs_root = self._request.node.get_closest_marker("needs_root") is not None
        missing = missing_for_netns()
        if missing and (n > 1 or needs_root):
            what = f"{n} hosts need" if n > 1 else "this test needs"
            pytest.skip(f"{SKIP_TAG} {what} root and network namespaces; missing: {missing}")
        try:
            return self.kit.start(n)
        except NeedsRootError as exc:
            pytest.skip(f"{SKIP_TAG} {exc}")

    def stop(self) -> None:
        """Stop this test's hosts."""
        if self._kit is not None:
            try:
                self._kit.stop()
            finally:
                _forget(self._kit)


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
        return kit

    yield make
    for kit in kits:
        try:
            kit.stop()
        finally:
            _forget(kit)
