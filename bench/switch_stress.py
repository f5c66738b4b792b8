"""Switch stress: an app that takes 3 s to import, redeployed many times under a request loop.

    python bench/switch_stress.py                    # 10 redeploys per worker class, per release
    python bench/switch_stress.py --redeploys 3 --releases bookworm --classes uvicorn
    python bench/switch_stress.py --json /tmp/switch.json

For each Debian release (a real-systemd host each, tests/hostkit.py; the releases run side by
side unless ``--one-at-a-time``) and each worker class (sync, gthread, uvicorn's; an app of its
own on the host, as tests/integration/test_switch.py deploys it): ``fab setup``, a first
deploy, then ``--redeploys`` code changes, each while a request loop GETs ``/`` every ~20 ms.
Per redeploy and in a table per release and class it prints the requests, the failed ones,
the app's own latency (the loop's median) and the slowest request beyond it. The goal
(issue 19): 0 failed and nothing 1 s beyond the app's latency. Figures only, no assertion:
the exit status is 0 unless something crashed. Every host started is torn down, also on
Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"

if __name__ == "__main__":
    try:
        import fabric  # noqa: F401
    except ImportError:  # re-run under the project's venv
        if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
            os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, *sys.argv[1:]])
        raise

sys.path.insert(0, str(REPO))
from tests.hostkit import HostKit  # noqa: E402
from tests.integration.apps import SLOW_WORKER_CLASSES  # noqa: E402
from tests.integration.test_switch import IMPORT_SECONDS, SLOW, redeploy, slow_site  # noqa: E402


@dataclass
class Figures:
    """One release and worker class: every redeploy's figures."""

    release: str
    worker_class: str
    requests: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    median: list[float] = field(default_factory=list)  # the app's own latency, s
    extra: list[float] = field(default_factory=list)  # slowest beyond it, s
    seconds: list[float] = field(default_factory=list)  # the redeploy's wall time
    failures: list[str] = field(default_factory=list)  # the first few, as the loop saw them
    error: str = ""  # a redeploy that failed, or a crash

    def row(self) -> str:
        """A table row."""
        if not self.requests:
            return f"{self.release:9} {self.worker_class:8} {'-':>9} {'-':>9} {self.error}"
        return (
            f"{self.release:9} {self.worker_class:8} {len(self.requests):9} "
            f"{sum(self.requests):9} {sum(self.failed):7} "
            f"{1000 * statistics.median(self.median):10.1f} {1000 * max(self.extra):14.1f} "
            f"{sum(1 for extra in self.extra if extra >= SLOW):10}"
            f"{'  ' + self.error if self.error else ''}"
        )


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def run_release(
    release: str, classes: list[str], redeploys: int, workdir: Path, live: list[HostKit]
) -> list[Figures]:
    """Boot a host of ``release``, stress each worker class on it, tear it down."""
    kit = HostKit(workdir / release, mode="nspawn", release=release)
    live.append(kit)
    results = [Figures(release, name) for name in classes]
    try:
        host = kit.start(1)[0]
        say(f"{release}: host up ({host.systemd}, {host.python})")
        for figures in results:
            name = figures.worker_class
            try:
                site = slow_site(host, kit, workdir / release / f"project-{name}", name)
                site.fab("setup")
                site.fab("deploy")
                for number in range(1, redeploys + 1):
                    started = time.monotonic()
                    seen = redeploy(site, name, f"2.0.{number}")
                    figures.seconds.append(time.monotonic() - started)
                    figures.requests.append(seen.requests)
                    figures.failed.append(len(seen.failures))
                    figures.median.append(seen.median)
                    figures.extra.append(seen.extra)
                    figures.failures += seen.failures[: 3 - len(figures.failures)]
                    say(
                        f"{release} {name} #{number}: {seen.requests} requests, "
                        f"{len(seen.failures)} failed, slowest {seen.slowest:.3f}s = the "
                        f"app's {seen.median:.3f}s + {seen.extra:.3f}s, serving {seen.served}, "
                        f"{figures.seconds[-1]:.1f}s"
                    )
            except Exception as exc:  # figures so far stand; say what broke
                figures.error = f"{type(exc).__name__}: {str(exc)[-400:]}"
                say(f"{release} {name}: {figures.error}")
    finally:
        kit.stop()
        live.remove(kit)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redeploys", type=int, default=10)
    parser.add_argument("--releases", default="bookworm,trixie")
    parser.add_argument("--classes", default=",".join(SLOW_WORKER_CLASSES))
    parser.add_argument("--one-at-a-time", action="store_true", help="releases one after another")
    parser.add_argument("--json", type=Path, help="write the figures there")
    args = parser.parse_args(argv)
    classes = args.classes.split(",")
    live: list[HostKit] = []

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    results: dict[str, list[Figures]] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="switch-stress-") as tmp:
        workdir = Path(tmp)

        def one(release: str) -> None:
            try:
                results[release] = run_release(release, classes, args.redeploys, workdir, live)
            except Exception:
                traceback.print_exc()

        try:
            releases = args.releases.split(",")
            if args.one_at_a_time:
                for release in releases:
                    one(release)
            else:
                threads = [threading.Thread(target=one, args=(r,)) for r in releases]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
        finally:
            for kit in list(live):
                kit.stop()
    rows = [figures for release in args.releases.split(",") for figures in results.get(release, [])]
    print(f"\nswitch stress: a {IMPORT_SECONDS:g} s import, {args.redeploys} redeploys per worker class, "
          f"{time.monotonic() - started:.0f}s in all")  # fmt: skip
    print(
        f"{'release':9} {'class':8} {'redeploys':>9} {'requests':>9} {'failed':>7} "
        f"{'app ms':>10} {'max extra ms':>14} {'over 1 s':>10}"
    )
    for figures in rows:
        print(figures.row())
        if figures.failures:
            print(f"    first failures: {figures.failures}")
    if args.json:
        args.json.write_text(json.dumps([asdict(f) for f in rows], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
