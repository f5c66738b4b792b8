"""Where packages come from, measured: a cold deploy of N real-systemd hosts three ways.

    .venv/bin/python bench/packages.py [--hosts 8]   (as root; prints figures, asserts nothing)

* ``pypi``: no PACKAGE_INDEX; this machine resolves from its default index (cached);
* ``index``: PACKAGE_INDEX is a private index served over HTTP on this machine; this machine
  resolves from it and ships the packages, the hosts reach no index;
* ``hosts``: HOST_PACKAGE_INDEX is that same index and every host pip-installs from it
  itself (the hosts reach the index through a route to one address of the kit's /24 on this
  machine's loopback; nothing leaves the machine).

Each mode deploys to N fresh Debian 12 hosts after an untimed `fab upload.build --local`
fills the local cache, as on a machine that has deployed before. Targets (issue 11): index at
most 1.2x pypi, and at most 0.6x hosts, compared within one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
_spec = importlib.util.spec_from_file_location("bench_deploy", REPO / "bench" / "deploy.py")
assert _spec and _spec.loader
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_deploy"] = bench  # dataclasses look their module up
_spec.loader.exec_module(bench)  # its Fleet, Site, put_app and project helpers

from tests.hosts import pyindex  # noqa: E402

MODES = ("pypi", "index", "hosts")


def expose(kit: bench.HostKit, address: str) -> None:
    """Make ``address`` (on this machine's loopback) reachable from every host of ``kit``."""
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    for host in kit.hosts:
        gateway = str(ipaddress.ip_address(host.address) - 1)
        host.sh(f"ip route add {address}/32 via {gateway} dev host0")


def unexpose(address: str) -> None:
    subprocess.run(
        ["ip", "addr", "del", f"{address}/32", "dev", "lo"], check=False, capture_output=True
    )


def run_mode(
    mode: str, n: int, workdir: Path, simple: Path, args: argparse.Namespace
) -> dict[str, object]:
    """Setup then a timed cold deploy of N fresh hosts with packages from ``mode``."""
    project = bench.make_project(workdir / mode)
    bench.put_app(project, bench.V1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABDEPLOY_")}
    env["PYTHONPATH"] = str(REPO)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    with bench.Fleet.of(workdir / f"hosts-{mode}", n, "nspawn") as (kit, hosts):
        site = bench.Site(kit, hosts, project, env, Path(), args.workers)
        bench.write_env(site, "100%", args.parallel)
        address = str(ipaddress.ip_network(kit.subnet).network_address + 254)
        server = None
        try:
            extra = ""
            if mode != "pypi":
                expose(kit, address)
                server, url = pyindex.serve(simple.parent, address)
                key = "PACKAGE_INDEX" if mode == "index" else "HOST_PACKAGE_INDEX"
                extra = f"{key}={url}/simple/\n"
            env_file = project / "config" / "staging.env"
            env_file.write_text(env_file.read_text() + extra)
            for task in (("setup",), ("upload.build", "--local")):  # untimed
                proc, _ = site.fab(*task)
                if proc.returncode != 0:
                    raise RuntimeError(
                        f"{mode}: fab {' '.join(task)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
                    )
            proc, seconds = site.fab("deploy")
            if proc.returncode != 0:
                raise RuntimeError(
                    f"{mode}: fab deploy failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
                )
            served = sorted(set(bench.served(hosts, bench.PORT)))
            return {"mode": mode, "hosts": n, "seconds": round(seconds, 2), "serving": served}
        finally:
            if server is not None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=10)
            unexpose(address)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=8, help="fleet size [8]")
    parser.add_argument("--parallel", type=int, default=8, help="fabdeploy's PARALLEL [8]")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers [2]")
    parser.add_argument("--json", default=str(REPO / "bench" / "packages.json"))
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or bench.nspawn_unavailable_reason("bookworm"):
        print("bench/packages.py needs root and real-systemd hosts (tests/hostkit.py)")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="fabdeploy-bench-packages-"))
    requirements = (REPO / "examples" / "app" / "requirements.txt").read_text().split()
    simple = pyindex.build(workdir / "index", requirements, ["{}.{}".format(*sys.version_info)])
    results = []
    try:
        for mode in MODES:
            print(f"== {mode}: cold deploy of {args.hosts} hosts", flush=True)
            results.append(run_mode(mode, args.hosts, workdir, simple, args))
            print(f"   {results[-1]['seconds']} s, serving {results[-1]['serving']}", flush=True)
    finally:
        for kit in list(bench.Fleet.live):
            bench.Fleet.stop(kit)
    by = {r["mode"]: float(r["seconds"]) for r in results}  # type: ignore[arg-type]
    lines = [
        f"index / pypi: {by['index'] / by['pypi']:.2f}x (target <= 1.2x)",
        f"index / hosts: {by['index'] / by['hosts']:.2f}x (target <= 0.6x)",
    ]
    print("\n".join(lines))
    Path(args.json).write_text(
        json.dumps({"results": results, "ratios": lines, "at": time.time()}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
