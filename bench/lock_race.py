"""The lock race, many times: two `fab staging deploy` processes started at once on the same
two real-systemd hosts (Debian 12 in systemd-nspawn), N rounds (default 20).

    python bench/lock_race.py               # as root: 20 rounds, about 2-3 minutes
    python bench/lock_race.py --rounds 5 --release trixie

The fleet and the race are tests/integration/test_lock.py's (`make_locks`, `race`): the two
hosts serve one release, each deploy deploys it again, and the project's ``after_lock`` hook
keeps the lock held 2 seconds so the second deploy finds it. Per round it prints how many
deploys proceeded (exit 0), the seconds, and the loser's message; then how many rounds had
exactly one winner. Figures, not assertions: the exit status is 0 unless something crashed.
Every host started is torn down at the end (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
VENV_PYTHON = REPO / ".venv" / "bin" / "python"


def _in_project_venv() -> None:
    """Re-run under the project's venv when fabric is not importable here."""
    try:
        import fabric  # noqa: F401
    except ImportError:
        if VENV_PYTHON.exists() and Path(sys.executable) != VENV_PYTHON:
            os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
        raise


def loser_line(text: str) -> str:
    """The loser's one-line reason (the lock's refusal), shortened."""
    lines = [line for line in text.splitlines() if "deploy lock held by" in line]
    return (lines or text.strip().splitlines()[-1:] or ["(no output)"])[0][:200]


def main() -> int:
    _in_project_venv()
    from tests.conftest import missing_for_netns, stop_kit, systemd_kit
    from tests.integration.test_lock import make_locks, race

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--release", default="bookworm", choices=("bookworm", "trixie"))
    args = parser.parse_args()
    missing = missing_for_netns()
    if missing:
        print(f"cannot run: real-systemd hosts need root and namespaces; missing: {missing}")
        return 2
    with tempfile.TemporaryDirectory(prefix="lock-race-") as tmp:
        kit = systemd_kit(Path(tmp) / "hosts", args.release)
        try:
            project = Path(tmp) / "project"
            project.mkdir()
            started = time.monotonic()
            with contextlib.redirect_stdout(io.StringIO()):  # fab's output of setup and deploy
                locks = make_locks(kit, project)
            print(
                f"2 {args.release} hosts set up and deployed in {time.monotonic() - started:.0f}s"
            )
            one = 0
            for round_ in range(1, args.rounds + 1):
                began = time.monotonic()
                outcome = race(locks)
                seconds = time.monotonic() - began
                winners = outcome.winners
                one += len(winners) == 1
                losers = [i for i in (0, 1) if i not in winners]
                why = loser_line(outcome.err[losers[0]]) if losers else "(none: both proceeded)"
                still = sum(locks.locked())
                print(
                    f"round {round_:2d}: {len(winners)} winner(s), {seconds:4.1f}s, "
                    f"locks left {still}; loser: {why}"
                )
            print(f"exactly one winner in {one} of {args.rounds} rounds")
        finally:
            stop_kit(kit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
