"""Deploy benchmark: fabdeploy against a naive Fabric script, on 1, 4 and 8 real SSH hosts.

    python bench/deploy.py                  # sizes 1,4,8 (as root: the hosts are namespaces)
    python bench/deploy.py --quick          # sizes 1,2, to try it
    python bench/deploy.py --sizes 1,8 --json /tmp/results.json
    python bench/deploy.py --sizes 1,8 --no-naive --baseline 113f625   # now against a revision

For each fleet size N it starts N fresh hosts (tests/hostkit.py), makes a project, runs
``fab staging setup`` (not timed), then times with fabdeploy:

1. cold deploy: the first deploy to the bare, set-up hosts;
2. unchanged redeploy: the same code again (were gunicorn masters or workers replaced?);
3. code-change redeploy: a new VERSION, while one thread per host GETs ``/`` every ~20 ms and
   counts failed requests; afterwards every host must serve the new version;
4. code change, no traffic: another new VERSION without the request loop (for reference: on
   2 cores the loop itself costs CPU).

Then, on the same hosts after stopping fabdeploy's service, the naive baseline
(bench/naive_fabfile.py: put tarballs, venv + pip install, systemctl restart, host after host)
runs the cold deploy and the code-change redeploy, the request loop running during its code
change too. Its unchanged redeploy is the same work as a code change: those figures stand in,
unless ``--naive-unchanged`` runs it as well.

Per run: wall seconds, SSH connections per host (the delta of sshd's "Accepted publickey" log
lines on each host), SSH sessions per host (fabdeploy's summary column ``ssh conn/sess``, the
naive script's own count), failed requests. With ``--baseline REV`` every scenario also runs
with fabdeploy's ``tasks/`` as of REV (exported from git, on hosts of its own, in the same
run) and a table gives now/before for each. Tables and the issue's targets (PASS/MISS) are
printed; everything goes to bench/results.json (``--json``). The targets are figures, not
assertions: the exit status is 0 unless something crashed. Every host started is torn down,
also on Ctrl-C, SIGTERM or an error. docs/benchmark.md has the method and a full run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"


def _in_project_venv() -> None:
    """Re-run under the project's venv when fabric is not importable here."""
    try:
        import fabric  # noqa: F401
    except ImportError:
        if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
            os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, *sys.argv[1:]])
        raise


if __name__ == "__main__":
    _in_project_venv()

sys.path.insert(0, str(REPO))
from tests.hostkit import HostKit, TestHost, nspawn_unavailable_reason  # noqa: E402
from tests.integration.apps import write_app  # noqa: E402

FAB = str(Path(sys.executable).with_name("fab"))
NAIVE = REPO / "bench" / "naive_fabfile.py"
#: The tool name of fabdeploy at ``--baseline REV`` in the results.
BEFORE = "before"
APP = "hello"
PORT = 8000  # fabdeploy's service
NAIVE_PORT = 8001  # the naive baseline's service
FAB_PIDFILE = f"/srv/{APP}/shared/pids/gunicorn.pid"  # on the host
NAIVE_PIDFILE = "/home/deploy/naive/gunicorn.pid"
COLD, UNCHANGED, CHANGE = "cold deploy", "unchanged redeploy", "code-change redeploy"
QUIET = "code change, no traffic"  # fabdeploy only: the same work without the request loop
SCENARIOS = (COLD, UNCHANGED, CHANGE, QUIET)
V1, V2, V3 = "1.0.0", "2.0.0", "3.0.0"
FAB_TIMEOUT = 300  # seconds for one fab command
NAIVE_TIMEOUT = 600  # seconds for one naive run (serial: 8 hosts take ~1 min)
LOOP_LIMIT = 420  # a request loop stops by itself after this many seconds
SETTLE = 30  # seconds a host may take to serve the new version after the command returned


class Interrupted(BaseException):
    """SIGTERM/SIGHUP: unwind like Ctrl-C so every host is torn down."""


# --- helpers ---------------------------------------------------------------------------------


def say(text: str = "") -> None:
    print(text, flush=True)


def get_json(url: str, timeout: float = 5) -> dict[str, str]:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        if answer.status != 200:
            raise RuntimeError(f"HTTP {answer.status}")
        return json.loads(answer.read())


def served(hosts: list[TestHost], port: int) -> list[str]:
    """The version each host serves on ``port`` ("down: ..." when it does not answer)."""
    versions = []
    for host in hosts:
        try:
            versions.append(get_json(host.url(port, "/"))["version"])
        except Exception as exc:
            versions.append(f"down: {type(exc).__name__}")
    return versions


def wait_serving(hosts: list[TestHost], port: int, version: str, limit: float) -> bool:
    """Wait (at most ``limit`` s) until every host serves ``version`` on ``port``."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if served(hosts, port) == [version] * len(hosts):
            return True
        time.sleep(0.1)
    return False


def accepted(host: TestHost) -> int:
    """SSH connections the host's sshd accepted so far (one log line per connection)."""
    try:
        log = host.path("/var/log/sshd.log")
        return log.read_text(errors="replace").count("Accepted publickey")
    except OSError:
        return 0


def processes(host: TestHost, pidfile: str) -> tuple[int, ...]:
    """The gunicorn master's pid and its workers' pids (empty when not running)."""
    found = host.sh(
        f'm=$(cat {pidfile} 2>/dev/null) && echo "$m" $(cat /proc/"$m"/task/"$m"/children)',
        check=False,
    ).stdout.split()
    if not found or not all(p.isdigit() for p in found):
        return ()
    return (int(found[0]), *sorted(int(c) for c in found[1:]))


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all the machine's cores, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def parallel(work: Callable[[TestHost], object], hosts: list[TestHost]) -> list[object]:
    """``work(host)`` for every host in threads; the first error is raised."""
    results: list[object] = [None] * len(hosts)
    errors: list[BaseException] = []

    def one(i: int, host: TestHost) -> None:
        try:
            results[i] = work(host)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i, h), daemon=True) for i, h in enumerate(hosts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise errors[0]
    return results


def git_state() -> dict[str, object]:
    """fabdeploy's commit and whether tasks/ has uncommitted changes (read-only git)."""

    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(REPO), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return proc.stdout.strip()

    changed = git("status", "--porcelain", "tasks/")
    return {
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "uncommitted_tasks": bool(changed),
        "uncommitted_files": [line[3:] for line in changed.splitlines()],
    }


# --- the request loop ------------------------------------------------------------------------


@dataclass
class Traffic:
    """What one host answered during a request loop."""

    url: str
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, with their time
    versions: dict[str, int] = field(default_factory=dict)


class RequestLoop:
    """One thread per host: GET / every ~20 ms until stopped or ``limit`` s have passed."""

    def __init__(self, hosts: list[TestHost], port: int, limit: float = LOOP_LIMIT) -> None:
        self.traffic = {h.address: Traffic(h.url(port, "/")) for h in hosts}
        self.limit = limit
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(t,), daemon=True)
            for t in self.traffic.values()
        ]
        self.started = 0.0

    def _run(self, traffic: Traffic) -> None:
        end = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                version = get_json(traffic.url)["version"]
                traffic.ok += 1
                traffic.versions[version] = traffic.versions.get(version, 0) + 1
            except Exception as exc:  # every failure counts, whatever its kind
                traffic.failed += 1
                if len(traffic.errors) < 5:
                    at = time.monotonic() - self.started
                    traffic.errors.append(f"+{at:.2f}s {type(exc).__name__}: {exc}"[:200])
            self._stop.wait(0.02)

    def __enter__(self) -> RequestLoop:
        self.started = time.monotonic()
        for t in self._threads:
            t.start()
        time.sleep(0.3)  # requests are flowing before the command starts
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def summary(self) -> dict[str, dict[str, object]]:
        return {name: asdict(t) for name, t in self.traffic.items()}


# --- fabdeploy's summary table ---------------------------------------------------------------


def parse_summary(stdout: str, names: list[str]) -> dict[str, dict[str, str]]:
    """The last summary table fabdeploy printed: {row name: {column: cell}}.

    Columns are found by overlap with the header's names (numbers are right-aligned, text
    left-aligned, so a cell always overlaps its header), which copes with empty cells.
    """
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("host ") and "total" in line]
    if not starts:
        return {}
    top = starts[-1]
    header = lines[top]
    columns = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", header)]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[top + 1 :]:
        first = line.split(" ", 1)[0]
        if first not in names and first != "local":
            break
        cells: dict[str, str] = {}
        for m in re.finditer(r"\S+(?: \S+)*", line):
            for start, end, name in columns:
                if m.start() < end and start < m.end():
                    cells[name] = (cells.get(name, "") + " " + m.group()).strip()
                    break
        rows[first] = cells
    return rows


def conn_sess(cell: str) -> tuple[int | None, int | None]:
    m = re.search(r"(\d+)/(\d+)", cell or "")
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


# --- one measured run ------------------------------------------------------------------------


@dataclass
class Measurement:
    tool: str  # "fabdeploy" or "naive"
    scenario: str
    n: int
    seconds: float
    ok: bool
    connections: list[int]  # per host, from sshd's log
    sessions: list[int | None]  # per host, from the tool's own count
    restarted: int  # hosts whose gunicorn master or workers were replaced
    serving: list[str]  # versions served afterwards
    expected: str
    requests: int = 0
    failed_requests: int | None = None  # None: no request loop ran
    failed_per_host: dict[str, int] = field(default_factory=dict)
    failure_samples: list[str] = field(default_factory=list)
    seconds_until_serving: float | None = None  # until every host served the new version
    cpu_busy: float | None = None  # share of the machine's cores busy during the command
    no_change: bool = False
    tool_seconds: float | None = None  # what the tool itself printed
    steps: dict[str, dict[str, str]] = field(default_factory=dict)  # fabdeploy's summary
    output_tail: str = ""


@dataclass
class Site:
    """N hosts and the project the benchmark deploys from."""

    kit: HostKit
    hosts: list[TestHost]
    project: Path
    env: dict[str, str]
    wheelhouse: Path
    workers: int

    def write_app(self, version: str) -> None:
        put_app(self.project, version)

    def fab(self, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        proc = subprocess.run(
            [FAB, "staging", *args],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=FAB_TIMEOUT,
            check=False,
        )
        return proc, time.monotonic() - started

    def naive(self) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        proc = subprocess.run(
            [
                sys.executable,
                str(NAIVE),
                "--hosts",
                ",".join(f"{h.user}@{h.address}" for h in self.hosts),
                "--key",
                str(self.kit.client_key),
                "--known-hosts",
                str(self.kit.known_hosts),
                "--app-dir",
                str(self.project / "app"),
                "--wheelhouse",
                str(self.wheelhouse),
                "--secrets",
                str(self.project / "app" / "secrets.env"),
                "--port",
                str(NAIVE_PORT),
                "--workers",
                str(self.workers),
            ],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=NAIVE_TIMEOUT,
            check=False,
        )
        return proc, time.monotonic() - started


def measure(site: Site, tool: str, scenario: str, version: str) -> Measurement:
    """Run one deploy with ``tool`` and measure it."""
    hosts = site.hosts
    ours = tool in ("fabdeploy", BEFORE)  # fabdeploy now, or at the --baseline revision
    port, pidfile = (PORT, FAB_PIDFILE) if ours else (NAIVE_PORT, NAIVE_PIDFILE)
    site.write_app(version)
    before_conn = [accepted(h) for h in hosts]
    before_procs = [processes(h, pidfile) for h in hosts]
    loop = RequestLoop(hosts, port) if scenario == CHANGE else None
    until_serving = None
    with loop or contextlib.nullcontext():
        started, cpu_before = time.monotonic(), cpu_times()
        proc, seconds = site.fab("deploy") if ours else site.naive()
        cpu_after = cpu_times()
        if loop is not None:  # keep the traffic on until every host serves the new version
            if wait_serving(hosts, port, version, SETTLE):
                until_serving = time.monotonic() - started
            time.sleep(0.3)
    out = proc.stdout + proc.stderr
    after_procs = [processes(h, pidfile) for h in hosts]
    m = Measurement(
        tool=tool,
        scenario=scenario,
        n=len(hosts),
        seconds=round(seconds, 3),
        ok=proc.returncode == 0,
        connections=[accepted(h) - b for h, b in zip(hosts, before_conn)],
        sessions=[],
        restarted=sum(1 for b, a in zip(before_procs, after_procs) if b and a != b),
        serving=served(hosts, port),
        expected=version,
        seconds_until_serving=None if until_serving is None else round(until_serving, 3),
        cpu_busy=round((cpu_after[0] - cpu_before[0]) / max(1, cpu_after[1] - cpu_before[1]), 3),
        output_tail=out[-4000:] if proc.returncode else "",
    )
    if loop is not None:
        traffic = loop.traffic
        m.requests = sum(t.ok + t.failed for t in traffic.values())
        m.failed_requests = sum(t.failed for t in traffic.values())
        m.failed_per_host = {name: t.failed for name, t in traffic.items()}
        m.failure_samples = [f"{name} {e}" for name, t in traffic.items() for e in t.errors][:10]
    if ours:
        names = [h.address for h in hosts]
        m.steps = parse_summary(proc.stdout, names)
        m.sessions = [
            conn_sess(m.steps.get(name, {}).get("ssh conn/sess", ""))[1] for name in names
        ]
        m.no_change = "no change: every host already serves" in proc.stdout
        found = re.findall(r"^deployed \S+ .* in ([\d.]+)s$", proc.stdout, re.M)
        m.tool_seconds = float(found[-1]) if found else None
    else:
        found = re.findall(r"^NAIVE_RESULT (.*)$", proc.stdout, re.M)
        if found:
            data = json.loads(found[-1])
            m.tool_seconds = round(data["seconds"], 3)
            m.sessions = [data["hosts"].get(h.address, {}).get("sessions") for h in hosts]
    flag = "" if m.ok else f"  FAILED (exit {proc.returncode})"
    extra = ""
    if m.failed_requests is not None:
        extra = f", {m.failed_requests} of {m.requests} requests failed"
    if m.seconds_until_serving is not None:
        extra += f", all serving {version} after {m.seconds_until_serving:.2f}s"
    if scenario == UNCHANGED:
        extra += f", restarted {m.restarted}/{len(hosts)}" + (" (no change)" if m.no_change else "")
    wrong = [f"{h.address}={v}" for h, v in zip(hosts, m.serving) if v != version]
    if wrong:
        extra += f", NOT serving {version}: {' '.join(wrong)}"
    say(
        f"  {tool:9} {scenario:23} N={len(hosts)}: {m.seconds:6.2f}s, "
        f"CPU {m.cpu_busy:.0%} busy, conn/host {fmt_range(m.connections)}, "
        f"sess/host {fmt_range(m.sessions)}{extra}{flag}"
    )
    if not m.ok:
        say("    " + "\n    ".join(out.strip().splitlines()[-25:]))
    return m


# --- setting up a fleet ----------------------------------------------------------------------


def write_env(site: Site, switch_batch: str, parallel_: int) -> None:
    kit, hosts = site.kit, site.hosts
    (site.project / "config" / "staging.env").write_text(
        f"HOSTS={','.join(f'{h.user}@{h.address}' for h in hosts)}\n"
        f"SSH_KEY={kit.client_key}\nKNOWN_HOSTS={kit.known_hosts}\n"
        f"APP_NAME={APP}\nAPP_DIR=app\nBIND=0.0.0.0:{PORT}\nSECRETS_FILE=app/secrets.env\n"
        f"WORKERS={site.workers}\nSWITCH_BATCH={switch_batch}\nPARALLEL={parallel_}\n"
        "TEST_COMMAND=\n"
    )


def put_app(project: Path, version: str) -> None:
    """The example app serving ``version`` in project/app, with its secrets file."""
    write_app(project / "app", version)
    (project / "app" / "secrets.env").write_text("GREETING=hi\n")


def make_project(root: Path) -> Path:
    project = root / "project"
    (project / "config").mkdir(parents=True)
    (project / "fabfile.py").write_text("from tasks import ns\n")
    return project


def build_wheelhouse(project: Path, dest: Path) -> float:
    """The naive script's wheelhouse, built once locally (the hosts have no network)."""
    started = time.monotonic()
    requirements = str(project / "app" / "requirements.txt")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "-r", requirements, "-w", str(dest)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pip wheel failed:\n{proc.stderr[-3000:]}")
    return time.monotonic() - started


def stop_fabdeploy_service(host: TestHost) -> str:
    """Stop fabdeploy's unit before the naive runs; say if a gunicorn outlived the stop."""
    host.sh(f"systemctl stop {APP} >/dev/null 2>&1 || true", timeout=60)
    left = processes(host, FAB_PIDFILE)
    note = ""
    if left:  # the unit lost track of its master: stop it by its pid
        note = f"{host.address}: gunicorn {left[0]} still ran after `systemctl stop {APP}`"
        host.sh(f"kill -TERM {left[0]} 2>/dev/null || true")
        deadline = time.monotonic() + 10
        while processes(host, FAB_PIDFILE) and time.monotonic() < deadline:
            time.sleep(0.1)
    return note


class Fleet:
    """Start N hosts for a size; always stopped (``close``), also on errors and signals."""

    live: list[HostKit] = []

    @classmethod
    @contextlib.contextmanager
    def of(cls, workdir: Path, n: int, mode: str) -> Iterator[tuple[HostKit, list[TestHost]]]:
        kit = HostKit(workdir, mode=mode, release="bookworm")
        cls.live.append(kit)
        try:
            yield kit, kit.start(n)
        finally:
            cls.stop(kit)

    @classmethod
    def stop(cls, kit: HostKit) -> None:
        try:
            kit.stop()
        except Exception as exc:
            say(f"!! tearing down {kit.workdir}: {exc}")
        if kit in cls.live:  # not after an interrupted stop: main()'s finally stops it again
            cls.live.remove(kit)


# --- the benchmark ---------------------------------------------------------------------------


def run_size(
    workdir: Path,
    project: Path,
    env: dict[str, str],
    wheelhouse: Path,
    n: int,
    args: argparse.Namespace,
    results: list[Measurement],
    notes: list[str],
) -> None:
    """Start N hosts, set them up, measure fabdeploy then the naive script (into ``results``)."""
    say(f"\n== {n} host(s)")
    with Fleet.of(workdir / f"hosts-{n}", n, args.hosts) as (kit, hosts):
        site = Site(kit, hosts, project, env, wheelhouse, args.workers)
        write_env(site, args.switch_batch, args.parallel)
        site.write_app(V1)
        proc, seconds = site.fab("setup")
        if proc.returncode != 0:
            raise RuntimeError(f"fab staging setup failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        say(f"  setup (not timed) {seconds:.1f}s")
        for scenario, version in ((COLD, V1), (UNCHANGED, V1), (CHANGE, V2), (QUIET, V3)):
            results.append(measure(site, "fabdeploy", scenario, version))
        if not args.no_naive:
            notes += [x for x in parallel(stop_fabdeploy_service, hosts) if x]  # type: ignore[misc]
            naive = [(COLD, V1), (UNCHANGED, V1), (CHANGE, V2)]
            if not args.naive_unchanged:  # it does for the same code what it does for new code
                naive.remove((UNCHANGED, V1))
            for scenario, version in naive:
                results.append(measure(site, "naive", scenario, version))
    if args.baseline_dir:  # the same scenarios, fabdeploy at --baseline, on fresh hosts
        with Fleet.of(workdir / f"hosts-{n}-before", n, args.hosts) as (kit, hosts):
            before_env = {**env, "PYTHONPATH": str(args.baseline_dir)}
            site = Site(kit, hosts, project, before_env, wheelhouse, args.workers)
            write_env(site, args.switch_batch, args.parallel)
            site.write_app(V1)
            proc, seconds = site.fab("setup")
            if proc.returncode != 0:
                raise RuntimeError(
                    f"setup at --baseline failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
                )
            for scenario, version in ((COLD, V1), (UNCHANGED, V1), (CHANGE, V2), (QUIET, V3)):
                results.append(measure(site, BEFORE, scenario, version))


def warm_up(workdir: Path, project: Path, env: dict[str, str], args: argparse.Namespace) -> float:
    """One untimed deploy to a throwaway host: fills the project's local build cache
    (.fabdeploy/: wheels, locally installed packages), as on a developer's machine that has
    deployed before, so every size's cold deploy measures the same work."""
    started = time.monotonic()
    with Fleet.of(workdir / "warm-up", 1, args.hosts) as (kit, hosts):
        site = Site(kit, hosts, project, env, Path(), args.workers)
        write_env(site, args.switch_batch, args.parallel)
        site.write_app(V1)
        for task in ("setup", "deploy"):
            proc, _ = site.fab(task)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"warm-up `fab staging {task}` failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
                )
    return time.monotonic() - started


# --- report ----------------------------------------------------------------------------------


def fmt_range(values: list[int | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    lo, hi = min(known), max(known)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in [headers, *rows]]
    return "\n".join(lines)


def find(results: list[Measurement], tool: str, scenario: str, n: int | None) -> Measurement | None:
    return next(
        (m for m in results if m.tool == tool and m.scenario == scenario and m.n == n), None
    )


def report(results: list[Measurement], sizes: list[int]) -> str:
    out = []
    smallest = sizes[0]
    stand_in = False
    for scenario in SCENARIOS:
        if not any(m.scenario == scenario for m in results):
            continue
        rows = []
        for n in sizes:
            fd = find(results, "fabdeploy", scenario, n)
            nv = find(results, "naive", scenario, n)
            mark = ""
            if nv is None and scenario == UNCHANGED:  # not run: its code-change figures
                nv = find(results, "naive", CHANGE, n)
                mark = "*" if nv else ""
                stand_in = stand_in or bool(nv)
            base = find(results, "fabdeploy", scenario, smallest)
            fd_s = fd.seconds if fd and fd.ok else None
            nv_s = nv.seconds if nv and nv.ok else None
            row = [
                str(n),
                f"{fd.seconds:.2f}" + ("" if fd.ok else "!") if fd else "-",
                f"{nv.seconds:.2f}" + ("" if nv.ok else "!") + mark if nv else "-",
                ratio(fd_s, nv_s),
                ratio(fd_s, base.seconds if base and base.ok else None),
                fmt_range(fd.connections) if fd else "-",
                fmt_range(fd.sessions) if fd else "-",
                fmt_range(nv.connections) if nv else "-",
                fmt_range(nv.sessions) if nv else "-",
            ]
            if scenario == CHANGE:
                row += [
                    str(fd.failed_requests) if fd else "-",
                    str(nv.failed_requests) if nv else "-",
                ]
            if scenario == UNCHANGED:
                row += [
                    f"{fd.restarted}/{n}" if fd else "-",
                    f"{nv.restarted}/{n}{mark}" if nv else "-",
                ]
            rows.append(row)
        headers = [
            "N",
            "fabdeploy s",
            "naive s",
            "fd/naive",
            f"fd N/{smallest}",
            "conn/host fd",
            "sess/host fd",
            "conn/host nv",
            "sess/host nv",
        ]
        if scenario == CHANGE:
            headers += ["failed req fd", "failed req nv"]
        if scenario == UNCHANGED:
            headers += ["restarted fd", "restarted nv"]
        title = scenario
        if scenario == QUIET:  # fabdeploy only: drop the naive columns
            keep = [i for i, h in enumerate(headers) if "naive" not in h and " nv" not in h]
            headers, rows = [headers[i] for i in keep], [[r[i] for i in keep] for r in rows]
            title += " (fabdeploy only: the code-change redeploy again, no request loop)"
        out += [f"\n{title}", table(headers, rows)]
    out.append("(! = the command failed; conn = sshd's accepted connections, sess = SSH sessions)")
    if stand_in:
        out.append(
            "(* = not run: the naive script does for an unchanged revision exactly what it does"
            " for a code change, so its code-change figures stand in; --naive-unchanged runs it)"
        )
    return "\n".join(out)


def steps_report(results: list[Measurement]) -> str:
    """Where fabdeploy's time goes: seconds per step from its summary table (the ``local``
    row for local steps such as build, else the slowest host)."""
    skip = {"host", "total", "ssh conn/sess", "result"}
    steps: list[str] = []
    for m in results:
        for cells in m.steps.values():
            steps += [c for c in cells if c not in skip and c not in steps]
    rows = []
    for m in results:
        if m.tool != "fabdeploy" or not m.steps:
            continue
        row = [m.scenario, str(m.n), f"{m.seconds:.2f}", f"{m.cpu_busy or 0:.0%}"]
        for step in steps:
            values = []
            for name, cells in m.steps.items():
                with contextlib.suppress(ValueError):
                    values.append((name == "local", float(cells.get(step, ""))))
            local = [v for is_local, v in values if is_local]
            hosts = [v for is_local, v in values if not is_local]
            row.append(f"{(local or [max(hosts)])[0]:.2f}" if local or hosts else "")
        rows.append(row)
    if not rows:
        return ""
    title = "\nfabdeploy: seconds per step (build: local, once; other steps: the slowest host)"
    return title + "\n" + table(["scenario", "N", "wall", "CPU busy", *steps], rows)


def export_tasks(revision: str, dest: Path) -> Path:
    """``tasks/`` of ``revision`` exported from git into ``dest`` (a PYTHONPATH entry)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "tasks"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def baseline_report(results: list[Measurement], sizes: list[int], revision: str) -> str:
    """Each scenario now and at ``revision``: seconds, sessions per host, the ratio."""
    rows = []
    for scenario in SCENARIOS:
        for n in sizes:
            now, before = (
                find(results, "fabdeploy", scenario, n),
                find(results, BEFORE, scenario, n),
            )
            if now is None or before is None:
                continue
            rows.append(
                [
                    scenario,
                    str(n),
                    f"{now.seconds:.2f}" + ("" if now.ok else "!"),
                    f"{before.seconds:.2f}" + ("" if before.ok else "!"),
                    ratio(now.seconds if now.ok else None, before.seconds if before.ok else None),
                    f"{fmt_range(now.connections)}/{fmt_range(now.sessions)}",
                    f"{fmt_range(before.connections)}/{fmt_range(before.sessions)}",
                ]
            )
    headers = [
        "scenario",
        "N",
        "now s",
        f"{revision[:10]} s",
        "now/before",
        "conn/sess now",
        "before",
    ]
    return f"\nfabdeploy now against {revision} (same run, hosts of their own)\n" + table(
        headers, rows
    )


def targets(results: list[Measurement], sizes: list[int]) -> list[dict[str, object]]:
    """The issue's targets beside the numbers (for the largest and smallest size run)."""
    big, small = sizes[-1], sizes[0]
    checks: list[dict[str, object]] = []

    def add(name: str, figure: str, passed: bool | None) -> None:
        verdict = "n/a" if passed is None else ("PASS" if passed else "MISS")
        checks.append({"target": name, "figure": figure, "result": verdict})

    def fmt(a: float | None, b: float | None) -> str:
        def secs(x: float | None) -> str:
            return "-" if x is None else f"{x:.2f}s"

        return f"{secs(a)} / {secs(b)} = {ratio(a, b)}"

    def seconds(tool: str, scenario: str, n: int) -> float | None:
        m = find(results, tool, scenario, n)
        return m.seconds if m and m.ok else None

    a, b = seconds("fabdeploy", CHANGE, big), seconds("fabdeploy", CHANGE, small)
    add(
        f"code-change redeploy: {big} hosts <= 1.5x {small} host",
        fmt(a, b),
        None if a is None or b is None or big == small else a <= 1.5 * b,
    )
    a, b = seconds("fabdeploy", QUIET, big), seconds("fabdeploy", QUIET, small)
    add(
        f"  (reference: the same without request traffic, {big} vs {small})",
        fmt(a, b),
        None if a is None or b is None or big == small else a <= 1.5 * b,
    )
    for scenario, limit in ((CHANGE, 0.2), (COLD, 0.5)):
        a, b = seconds("fabdeploy", scenario, big), seconds("naive", scenario, big)
        add(
            f"{scenario}: {big} hosts <= {limit}x naive",
            fmt(a, b),
            None if a is None or b is None else a <= limit * b,
        )
    m = find(results, "fabdeploy", UNCHANGED, big)
    add(
        f"unchanged redeploy of {big} hosts < 2 s, restarts nothing",
        f"{m.seconds:.2f}s, restarted {m.restarted}/{big}" if m else "-",
        None if m is None else (m.ok and m.seconds < 2 and m.restarted == 0),
    )
    a, b = seconds("fabdeploy", UNCHANGED, big), seconds("fabdeploy", UNCHANGED, small)
    add(
        f"unchanged redeploy: {big} hosts <= 1.3x {small} host",
        fmt(a, b),
        None if a is None or b is None or big == small else a <= 1.3 * b,
    )
    for scenario, limit in ((CHANGE, 6), (UNCHANGED, 2)):
        done = [m for m in results if m.tool == "fabdeploy" and m.scenario == scenario]
        most = max((x for m in done for x in m.sessions if x is not None), default=None)
        add(
            f"{scenario}: <= {limit} SSH sessions per host",
            f"at most {most} (every size)",
            None if most is None else most <= limit,
        )
    before = [m for m in results if m.tool == BEFORE and m.ok]
    if before:
        slower = []
        for m in before:
            now = find(results, "fabdeploy", m.scenario, m.n)
            if now is None or not now.ok or now.seconds > m.seconds * 1.1:
                slower.append(f"{m.scenario} N={m.n}")
        add(
            "no slower than --baseline in any scenario (10% noise allowed)",
            "slower: " + ", ".join(slower) if slower else "none slower",
            not slower,
        )
    fd = [m for m in results if m.tool == "fabdeploy"]
    worst = max((c for m in fd for c in m.connections), default=None)
    add(
        "<= 2 SSH connections per host per deploy",
        f"at most {worst} (every fabdeploy run, every size)",
        None if worst is None else worst <= 2,
    )
    changes = [m for m in fd if m.scenario == CHANGE]
    failed = sum(m.failed_requests or 0 for m in changes)
    total = sum(m.requests for m in changes)
    wrong = [m for m in changes if m.serving != [m.expected] * m.n]
    add(
        "0 failed requests during a code-change redeploy, on every host",
        f"{failed} of {total} failed (every size)" + (", a host not updated" if wrong else ""),
        None if not changes else failed == 0 and not wrong,
    )
    return checks


# --- main ------------------------------------------------------------------------------------


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,4,8", help="fleet sizes [%(default)s]")
    parser.add_argument("--quick", action="store_true", help="sizes 1,2 (to try it)")
    parser.add_argument(
        "--json", default=str(REPO / "bench" / "results.json"), help="results file [%(default)s]"
    )
    parser.add_argument(
        "--switch-batch", default="50%", help="fabdeploy's SWITCH_BATCH [%(default)s]"
    )
    parser.add_argument("--parallel", type=int, default=8, help="fabdeploy's PARALLEL [8]")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, both [2]")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument(
        "--naive-unchanged",
        action="store_true",
        help="also run the naive script's unchanged redeploy (by default its code-change "
        "figures stand in: it does the same work)",
    )
    parser.add_argument(
        "--baseline",
        default="",
        help="also run every scenario with fabdeploy at this git revision (tasks/ exported), "
        "on hosts of its own, and print the ratios",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (hosts' logs)")
    parser.add_argument(
        "--hosts",
        choices=["nspawn", "netns"],
        help="real systemd (Debian 12 in systemd-nspawn) or the stand-in [nspawn where it boots]",
    )
    args = parser.parse_args(argv)
    if args.hosts is None:
        args.hosts = "nspawn" if nspawn_unavailable_reason("bookworm") is None else "netns"
    sizes = [1, 2] if args.quick else sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if os.geteuid() != 0:
        say("bench/deploy.py needs root: its hosts are network namespaces (tests/hostkit.py)")
        return 2

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)
    state = git_state()
    load = round(os.getloadavg()[0], 2)
    workdir = Path(tempfile.mkdtemp(prefix="fabdeploy-bench-"))
    started = time.monotonic()
    results: list[Measurement] = []
    notes: list[str] = []
    status = 0
    try:
        say(
            f"fabdeploy deploy benchmark: sizes {sizes}, SWITCH_BATCH={args.switch_batch}, "
            f"PARALLEL={args.parallel}, WORKERS={args.workers}, hosts {args.hosts}; fabdeploy {state['commit']}"
            + (" with uncommitted changes in tasks/" if state["uncommitted_tasks"] else "")
            + f"; {os.cpu_count()} cores, load average {load}; work dir {workdir}"
        )
        project = make_project(workdir)
        args.baseline_dir = (
            export_tasks(args.baseline, workdir / "baseline") if args.baseline else None
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("FABDEPLOY_")}
        env["PYTHONPATH"] = str(REPO)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
        put_app(project, V1)
        wheelhouse = workdir / "wheelhouse"
        say(f"naive wheelhouse built locally in {build_wheelhouse(project, wheelhouse):.1f}s")
        say(f"warm-up deploy (not timed) in {warm_up(workdir, project, env, args):.1f}s")
        for n in sizes:
            run_size(workdir, project, env, wheelhouse, n, args, results, notes)
    except (KeyboardInterrupt, Interrupted) as exc:
        say(f"\ninterrupted ({str(exc) or 'Ctrl-C'}): tearing down")
        status = 130
    except Exception:
        traceback.print_exc()
        status = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not stop the teardown
        for kit in list(Fleet.live):
            Fleet.stop(kit)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if results:
        done = sorted({m.n for m in results})
        say(report(results, done))
        say(steps_report(results))
        if args.baseline:
            say(baseline_report(results, done, args.baseline))
        checks = targets(results, done)
        say("\ntargets (issue 5)")
        width = max(len(str(c["target"])) for c in checks)
        for c in checks:
            say(f"  {c['result']:4}  {c['target']:{width}}  {c['figure']}")
        for note in notes:
            say(f"note: {note}")
        data = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "fabdeploy": state,
            "machine": {
                "cores": os.cpu_count(),
                "load_average_at_start": load,
                "python": sys.version.split()[0],
            },
            "settings": {
                "sizes": done,
                "switch_batch": args.switch_batch,
                "parallel": args.parallel,
                "workers": args.workers,
                "naive_unchanged_run": args.naive_unchanged,
                "complete": status == 0,
            },
            "seconds": round(time.monotonic() - started, 1),
            "measurements": [asdict(m) for m in results],
            "targets": checks,
            "notes": notes,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
        say(f"\nresults in {args.json}; the whole run took {time.monotonic() - started:.0f}s")
    return status


if __name__ == "__main__":
    sys.exit(main())
