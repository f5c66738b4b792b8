"""A cold deploy of the uv example (examples/uvapp: uv.lock) against the same app on the
requirements path, measured in one run.

    .venv/bin/python bench/lockfile.py [--rounds 2] [--hosts 1]   (as root; prints figures)

* ``uv.lock``: examples/uvapp as it is: pyproject.toml and uv.lock, gunicorn not listed, so
  fabdeploy exports the lock (``uv export --locked``), adds gunicorn, checks the lock's hashes;
* ``requirements``: the same app with uv.lock replaced by the requirements.txt a user would
  write by hand for it: the lock's export and ``gunicorn==<the documented version>`` (the same
  resolved set, so the same wheels).

Each round deploys each variant to fresh Debian 12 hosts (setup untimed) from a fresh project
(no ``.fabdeploy/`` cache: the wheelhouse is made, its wheels from pip's own cache after the
first round), the order alternating between rounds. Prints the seconds of each deploy and of
its wheelhouse, and the ratio of the medians; writes them to bench/lockfile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import deploy as bench  # noqa: E402  (bench/deploy.py: its Fleet, Site and project helpers)

from tasks.build import pip, workers  # noqa: E402
from tests.conftest import fab_env  # noqa: E402

UVAPP = REPO / "examples" / "uvapp"
VARIANTS = ("uv.lock", "requirements")
PARALLEL, WORKERS = 8, 2  # fabdeploy's PARALLEL, gunicorn's workers


def requirements_text() -> str:
    """The requirements file a user writes by hand for the uv example: the lock's pins and
    gunicorn at the version fabdeploy would add."""
    uv = pip.uv_binary()
    assert uv, "the uv package is not installed in this venv"
    exported = subprocess.run(
        [uv, "export", "--locked", "--no-dev", "--no-emit-project", "--no-hashes", "-q"],
        cwd=UVAPP, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return exported + "==".join(workers.GUNICORN) + "\n"


def put_app(project: Path, variant: str, requirements: str) -> None:
    """The uv example in project/app, as ``variant`` has it."""
    app = project / "app"
    shutil.copytree(UVAPP, app, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    (app / "secrets.env").write_text("GREETING=hi\n")
    if variant == "requirements":
        (app / "uv.lock").unlink()
        (app / "requirements.txt").write_text(requirements)


def wheelhouse_seconds(output: str) -> float | None:
    """The seconds the wheelhouse took (``wheelhouse for <tags>: 8 wheels in 2.2s``)."""
    found = re.search(r"wheelhouse for \S+: \d+ wheels in (\d+(?:\.\d+)?)s", output)
    return float(found.group(1)) if found else None


def run_variant(variant: str, n: int, workdir: Path, requirements: str) -> dict[str, object]:
    """Setup (untimed), then a timed cold deploy of ``variant`` to N fresh hosts."""
    project = bench.make_project(workdir)
    put_app(project, variant, requirements)
    with bench.Fleet.of(workdir / "hosts", n, "nspawn") as (kit, hosts):
        site = bench.Site(kit, hosts, project, fab_env(), Path(), WORKERS)
        bench.write_env(site, "100%", PARALLEL)
        proc, _ = site.fab("setup")
        if proc.returncode != 0:
            raise RuntimeError(f"{variant}: fab setup failed:\n{(proc.stdout + proc.stderr)[-3000:]}")  # fmt: skip
        proc, seconds = site.fab("deploy")
        if proc.returncode != 0:
            raise RuntimeError(f"{variant}: fab deploy failed:\n{(proc.stdout + proc.stderr)[-3000:]}")  # fmt: skip
        served = sorted({bench.get_json(h.url(bench.PORT, "/")).get("server", "") for h in hosts})
        return {
            "variant": variant,
            "hosts": n,
            "seconds": round(seconds, 2),
            "wheelhouse": wheelhouse_seconds(proc.stdout),
            "served_by": served,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both variants [2]")
    parser.add_argument("--hosts", type=int, default=1, help="fleet size [1]")
    parser.add_argument("--json", default=str(REPO / "bench" / "lockfile.json"))
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or bench.nspawn_unavailable_reason("bookworm"):
        print(f"{Path(__file__).name} needs root and real-systemd hosts (tests/hostkit.py)")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="fabdeploy-bench-lockfile-"))
    requirements = requirements_text()
    results = []
    try:
        for round_ in range(args.rounds):
            order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                print(f"== round {round_ + 1}, {variant}: cold deploy of {args.hosts} host(s)", flush=True)  # fmt: skip
                folder = workdir / f"{round_}-{variant.replace('.', '-')}"
                results.append(run_variant(variant, args.hosts, folder, requirements))
                print(f"   {results[-1]['seconds']} s (wheelhouse {results[-1]['wheelhouse']} s), served by {results[-1]['served_by']}", flush=True)  # fmt: skip
    finally:
        for kit in list(bench.Fleet.live):
            bench.Fleet.stop(kit)
        shutil.rmtree(workdir, ignore_errors=True)
    median = {
        v: statistics.median(float(r["seconds"]) for r in results if r["variant"] == v)  # type: ignore[arg-type]
        for v in VARIANTS
    }
    line = (
        f"median cold deploy: uv.lock {median['uv.lock']:.2f} s, requirements "
        f"{median['requirements']:.2f} s: {median['uv.lock'] / median['requirements']:.2f}x"
    )
    print(line)
    figures = {"results": results, "median": median, "summary": line, "at": time.time()}
    Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
