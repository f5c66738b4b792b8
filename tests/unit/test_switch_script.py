"""The switch (tasks/scripts/switch.sh) under the local bash, no SSH and no systemd.

Masters are fake gunicorns (tests/unit/fake_gunicorn.py: pidfiles, forked workers, USR2,
WINCH, HUP and TERM as gunicorn handles them), `sudo` and `systemctl` are fakes on PATH (the
app user is another user, so every ``as_app`` goes through sudo), and the health path is a
local HTTP server answering what the release `current` points to says (its ``health`` file;
200 without one). Each test asserts the exit status and the state after: where `current`
points, which masters run with how many workers, what the pidfile holds. Every process a
test starts is killed by pid at its end.

The fake workers load "the app" in ``ready_after`` seconds (0.2 unless a release's fake.json
says) and then write their ready markers, as gunicorn.conf.py's hook does; the fake masters log
when they got each signal and when each worker became ready, on the clock all processes share,
so that the tests can assert the order: no WINCH before every new worker is ready, no TERM of a
new master before the old master's fresh workers are.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasks import config
from tasks.core import output, shell
from tasks.host import service, units
from tasks.ssh import host as ssh_host
from tests.unit import fake_gunicorn
from tests.unit.test_monitor import LocalConnection

FAKE = Path(__file__).with_name("fake_gunicorn.py")
WORKERS = 2
SERVICE = "hello.service"
#: The app user: not the user running the tests, so that as_app goes through the fake sudo.
APP_USER = "fabdeploy-fake-app"


class Health(http.server.BaseHTTPRequestHandler):
    """Answers with the status in ``<current>/health`` (200 without one, 503 without current);
    any other path than /health with the status in ``<current>/page``."""

    current: Path

    def do_GET(self) -> None:
        code = 503
        if self.current.is_dir():
            found = self.current / ("health" if self.path == "/health" else "page")
            code = int(found.read_text()) if found.exists() else 200
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"x")

    def log_message(self, *args: object) -> None:
        pass


class Site:
    """A deploy root with releases A and B, a health endpoint and fake sudo and systemctl."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "srv"
        self.current = self.root / "current"
        system = tmp_path / "host"  # /run and /etc as the `host_dirs` fixture moves them
        self.pidfile = system / "run" / "hello" / "gunicorn.pid"
        self.log = self.root / "shared" / "log" / "error.log"
        self.conf = system / "etc" / "hello" / "gunicorn.conf.py"
        self.registry = tmp_path / "started.pids"
        self.calls = tmp_path / "systemctl.calls"
        self.bin = tmp_path / "bin"
        for path in (self.root / "releases" / "A", self.root / "releases" / "B"):
            path.mkdir(parents=True)
        for path in (self.pidfile.parent, self.conf.parent, self.log.parent, self.bin, self.root / ".switch"):  # fmt: skip
            path.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        self.registry.touch()
        self.hooked(True)
        self.masters: list[subprocess.Popen[bytes]] = []
        handler = type("SiteHealth", (Health,), {"current": self.current})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        self.write_fakes()

    def command(self) -> list[str]:
        """How the unit starts gunicorn: through `current`, not resolved."""
        return [sys.executable, str(FAKE), str(self.pidfile), str(WORKERS), str(self.current),
                str(self.log), str(self.registry), str(self.conf)]  # fmt: skip

    def hooked(self, yes: bool) -> None:
        """Write gunicorn.conf.py with the ready-marker hooks (as setup renders it now) or
        without (as an older fabdeploy rendered it)."""
        text = f"# {service.READY_HOOK}\n" if yes else "workers = 2\n"
        self.conf.write_text(text)

    def markers(self) -> set[str]:
        """The ready markers beside the pidfile."""
        return {path.name for path in self.pidfile.parent.glob("ready.*")}

    def times(self, what: str, pids: Iterator[int] | list[int] | set[int]) -> list[float]:
        """When each of ``pids`` logged ``what`` (``ready``, ``got WINCH``...), from the log."""
        found, wanted = [], set(pids)
        for line in self.log.read_text().splitlines():
            pid, _, text = line.partition("] ")
            pid = pid.lstrip("[")
            if pid.isdigit() and int(pid) in wanted and text.startswith(f"{what} at "):
                found.append(float(text.rpartition(" ")[2]))
        return found

    def write_fakes(self) -> None:
        start = " ".join(shlex.quote(word) for word in self.command())
        q = {k: shlex.quote(str(v)) for k, v in vars(self).items() if isinstance(v, Path)}
        (self.bin / "systemctl").write_text(
            f"""#!/bin/bash
# systemctl start|stop -- SERVICE: start the fake master (as systemd would) or TERM it
echo "$*" >> {q["calls"]}
case "$1" in
  start)
    [ ! -e {q["root"]}/start-fails ] || exit 1
    cd {q["current"]} || exit 1
    setsid {start} </dev/null >>{q["log"]} 2>&1 &
    for _ in $(seq 100); do  # until the new master wrote its pid (a stale one may be there)
      [ "$(cat {q["pidfile"]} 2>/dev/null)" != $! ] || exit 0
      sleep 0.05
    done
    exit 1 ;;
  stop)
    pid=$(cat {q["pidfile"]} 2>/dev/null) || exit 0
    kill -TERM "$pid" 2>/dev/null || exit 0
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done ;;
esac
"""
        )
        (self.bin / "sudo").write_text(
            """#!/bin/bash
# sudo -n [-u USER --] CMD...: runs CMD, refusing one whose words match $FAKE_SUDO_REFUSE
[ "$1" = -n ] && shift
if [ "$1" = -u ]; then shift 2; [ "$1" != -- ] || shift; fi
# shellcheck disable=SC2254
case "$*" in ${FAKE_SUDO_REFUSE:-x-never-x}) echo "sudo: refused: $*" >&2; exit 1 ;; esac
exec "$@"
"""
        )
        for name in ("systemctl", "sudo"):
            (self.bin / name).chmod(0o755)

    def release(
        self, name: str, *, health: int | None = None, page: int | None = None, **fake: object
    ) -> None:
        """Make release ``name`` answer ``health`` (and ``page`` on any other path) and its
        masters behave as ``fake`` says."""
        if health is not None:
            (self.root / "releases" / name / "health").write_text(str(health))
        if page is not None:
            (self.root / "releases" / name / "page").write_text(str(page))
        if fake:
            (self.root / "releases" / name / "fake.json").write_text(json.dumps(fake))

    def point(self, name: str | None) -> None:
        """Point `current` at ``name`` (None: no current link)."""
        if self.current.is_symlink():
            self.current.unlink()
        if name:
            self.current.symlink_to(f"releases/{name}")

    def target(self) -> str | None:
        """Where `current` points (None: no link)."""
        return os.readlink(self.current) if self.current.is_symlink() else None

    def start(self, name: str = "A") -> int:
        """A master serving release ``name`` with its workers, as systemd leaves it."""
        self.point(name)
        master = subprocess.Popen(
            self.command(), cwd=self.current, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        self.masters.append(master)
        wait_for(lambda: len(workers(master.pid)) == WORKERS, f"master {master.pid} booted")
        assert self.pids() == (master.pid, None)
        return master.pid

    def pids(self) -> tuple[int | None, int | None]:
        """What the pidfile and the ``.2`` pidfile hold."""
        found = []
        for path in (self.pidfile, Path(f"{self.pidfile}.2")):
            text = path.read_text().strip() if path.exists() else ""
            found.append(int(text) if text else None)
        return found[0], found[1]

    def switch(
        self, target: str = "releases/B", *, refuse: str = "", **env: object
    ) -> subprocess.CompletedProcess[str]:
        """Run switch.sh as `service.switch` sends it (without detach.sh), with short timeouts
        (``env`` overrides them); the fake sudo refuses commands matching ``refuse``."""
        values: dict[str, object] = {
            "APP_USER": APP_USER,
            "ROOT": self.root,
            "CURRENT": self.current,
            "TMP_LINK": self.root / ".current.tmp",
            "PIDFILE": self.pidfile,
            "ERROR_LOG": self.log,
            "SERVICE": SERVICE,
            "URL": self.url,
            "WORKERS": WORKERS,
            "CONF": self.conf,
            "READY_HOOK": service.READY_HOOK,
            "TIMEOUT": 5,
            "GRACE": 1,
            "TAIL": 5,
            "ANSWER_GRACE": 1,
            "PROBE_PYTHON": sys.executable,
            "NEW_TARGET": target,
        }
        values.update(env)
        values.setdefault("READY_TIMEOUT", values["TIMEOUT"])
        process_env = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "FAKE_SUDO_REFUSE": refuse,
        }
        return subprocess.run(
            ["bash", "-c", shell.bash_text(shell.shell("switch"), values)],
            env=process_env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def stop_all(self) -> None:
        """Kill every process the fakes started (by pid), then the health server."""
        for line in self.registry.read_text().split():
            pid = int(line)
            try:
                if str(FAKE) in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
        for master in self.masters:
            master.wait(timeout=5)
        self.server.shutdown()
        self.server.server_close()


def alive(pid: int | None) -> bool:
    """A live process, not a zombie (as lib.sh's alive)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def workers(pid: int | None, but: int | None = None) -> list[int]:
    """The live children of ``pid`` (``but`` not counted)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(kid) for kid in text.split() if alive(int(kid)) and int(kid) != but]


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.02)


@pytest.fixture
def site(tmp_path: Path, host_dirs: Path) -> Iterator[Site]:
    made = Site(tmp_path)
    try:
        yield made
    finally:
        made.stop_all()


def serving(site: Site, pid: int, release: str) -> None:
    """``pid`` is the one master, with its workers, in ``release``, and the pidfile says so."""
    assert alive(pid) and len(workers(pid)) == WORKERS
    assert os.readlink(f"/proc/{pid}/cwd") == str(site.root / "releases" / release)
    assert site.pids()[0] == pid


# --- success -------------------------------------------------------------------------------


def test_switch_hands_over_to_a_new_master_of_the_new_release(site: Site) -> None:
    old = site.start("A")
    done = site.switch("releases/B")
    assert done.returncode == 0, done.stderr
    assert site.target() == "releases/B"
    new = site.pids()[0]
    assert new not in (None, old) and not alive(old)
    serving(site, new, "B")  # type: ignore[arg-type]
    assert (
        f"new master {new} has {WORKERS} workers; stopping the old master's workers" in done.stdout
    )
    assert f"switched: master {old} -> {new}, serving B: health 200" in done.stdout
    wait_for(lambda: site.pids() == (new, None), "the new master renamed its .2 pidfile")


def test_reload_switches_onto_current_itself(site: Site) -> None:
    old = site.start("A")
    done = site.switch("")
    assert done.returncode == 0, done.stderr
    assert site.target() == "releases/A" and not alive(old)
    assert "serving A: health 200" in done.stdout
    serving(site, site.pids()[0], "A")  # type: ignore[arg-type]


def test_first_deploy_starts_the_service(site: Site) -> None:
    done = site.switch("releases/B")
    assert done.returncode == 0, done.stderr
    master = site.pids()[0]
    assert f"started {SERVICE} (master {master}), serving B: health 200" in done.stdout
    assert site.target() == "releases/B"
    serving(site, master, "B")  # type: ignore[arg-type]
    assert site.calls.read_text().split("\n")[0] == f"start -- {SERVICE}"


def test_a_stopped_service_with_a_dead_pid_is_started(site: Site) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    site.pidfile.write_text(f"{dead.pid}\n")
    site.point("A")
    done = site.switch("releases/B")
    assert done.returncode == 0, done.stderr
    assert "started " in done.stdout and site.target() == "releases/B"
    serving(site, site.pids()[0], "B")  # type: ignore[arg-type]


def test_an_old_master_ignoring_term_is_killed(site: Site) -> None:
    site.release("A", ignore=["TERM"])
    old = site.start("A")
    done = site.switch("releases/B")
    assert done.returncode == 0, done.stderr
    assert f"old master {old} still running after 1s: killing it" in done.stdout
    new = site.pids()[0]
    wait_for(lambda: not alive(old), "the KILLed old master to be gone", 2)  # KILL is async
    assert not alive(old) and site.target() == "releases/B"
    assert f"switched: master {old} -> {new}, serving B" in done.stdout
    serving(site, new, "B")  # type: ignore[arg-type]


def test_a_master_left_by_an_interrupted_switch_is_stopped_first(site: Site) -> None:
    old = site.start("A")
    os.kill(old, signal.SIGUSR2)  # the interrupted switch: a second master, old's workers stopped
    wait_for(lambda: alive(site.pids()[1]), "the leftover master")
    leftover = site.pids()[1]
    wait_for(lambda: len(workers(leftover)) == WORKERS, "the leftover's workers")
    os.kill(old, signal.SIGWINCH)
    wait_for(lambda: workers(old, but=leftover) == [], "the old master's workers stopped")
    done = site.switch("releases/B")
    assert done.returncode == 0, done.stderr
    assert f"an interrupted switch left master {leftover} beside {old}: stopping it" in done.stdout
    new = site.pids()[0]
    assert new not in (old, leftover) and not alive(leftover) and not alive(old)
    assert site.target() == "releases/B"
    serving(site, new, "B")  # type: ignore[arg-type]


# --- ready workers -------------------------------------------------------------------------


def new_master(done: subprocess.CompletedProcess[str]) -> int:
    """The new master's pid, from the switch's output."""
    found = re.search(r"new master (\d+)", done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    return int(found.group(1))


def test_the_old_workers_stop_only_once_every_new_worker_is_ready(site: Site) -> None:
    site.release("B", ready_after=1.5)  # the app takes 1.5 s to load; forked long before
    old = site.start("A")
    done = site.switch("releases/B")
    assert done.returncode == 0, done.stderr
    new = site.pids()[0]
    serving(site, new, "B")  # type: ignore[arg-type]
    ready = site.times("ready", workers(new))
    assert len(ready) == WORKERS
    (winch,) = site.times("got WINCH", [old])
    assert winch > max(ready)  # no old worker stopped before every new one could answer
    assert f"new master {new}: {WORKERS} workers ready (the app loaded) after" in done.stdout
    assert site.markers() == {  # the old workers' markers are gone with them
        f"ready.{pid}.{Path(f'/proc/{pid}/stat').read_text().rpartition(')')[2].split()[19]}"
        for pid in workers(new)
    }


def test_new_workers_not_ready_in_time_leave_the_old_ones_serving(site: Site) -> None:
    site.release("B", ready_after=-1)  # forked, never loads the app
    old = site.start("A")
    before = workers(old)
    done = site.switch("releases/B", TIMEOUT=2)
    new = new_master(done)
    assert (
        f"switch failed: the new master {new}'s workers were not ready after 2s "
        f"(0 of {WORKERS} had loaded the app)"
    ) in done.stderr
    rolled_back(site, done, old)
    assert site.times("got WINCH", [old]) == [] and sorted(workers(old)) == sorted(before)
    assert site.times("got TERM", [new]) and not alive(new)


def test_workers_have_ready_timeout_to_load_then_health_has_its_own(site: Site) -> None:
    site.release("B", ready_after=2.5)  # longer than TIMEOUT, within READY_TIMEOUT
    old = site.start("A")
    done = site.switch("releases/B", TIMEOUT=1, READY_TIMEOUT=6)
    assert done.returncode == 0, done.stderr
    assert f"switched: master {old} -> " in done.stdout


def test_the_ready_timeout_is_the_larger_of_health_and_worker_timeouts(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    env = tmp_path / "config" / "staging.env"
    env.write_text("APP_NAME=hello\nHOSTS=web1\nHEALTH_TIMEOUT=10\n")
    assert (
        service.ready_timeout(config.build("staging", tmp_path)) == 30
    )  # WORKER_TIMEOUT's default
    env.write_text("APP_NAME=hello\nHOSTS=web1\nHEALTH_TIMEOUT=60\nWORKER_TIMEOUT=20\n")
    assert service.ready_timeout(config.build("staging", tmp_path)) == 60


def test_a_rollback_stops_the_new_master_only_once_the_old_ones_workers_are_ready(
    site: Site,
) -> None:
    site.release("A", ready_after=1.0)
    site.release("B", health=500)
    old = site.start("A")
    done = site.switch("releases/B")
    assert "switch failed: health check" in done.stderr
    rolled_back(site, done, old)
    new = new_master(done)
    (hup,) = site.times("got HUP", [old])
    fresh = site.times("ready", workers(old))  # the workers HUP gave the old master
    assert len(fresh) == WORKERS and min(fresh) > hup
    (term,) = site.times("got TERM", [new])
    assert term > max(fresh)  # the new workers served until the old release could again


def test_a_rollback_whose_old_workers_are_never_ready_says_so(site: Site) -> None:
    site.release("B", health=500)
    site.start("A")
    site.release("A", ready_after=-1)  # HUP's fresh workers of A never load the app
    done = site.switch("releases/B", TIMEOUT=2)
    assert (
        f"the old master's workers were not ready after 2s: stopping {new_master(done)} anyway"
    ) in done.stderr
    assert done.returncode == 1 and site.target() == "releases/A"
    wait_for(lambda: not alive(new_master(done)), "the new master stopped")


def test_the_leftover_master_is_stopped_once_the_old_ones_workers_are_ready(site: Site) -> None:
    site.release("A", ready_after=1.0)
    old = site.start("A")
    os.kill(old, signal.SIGUSR2)
    wait_for(lambda: alive(site.pids()[1]), "the leftover master")
    leftover = site.pids()[1]
    wait_for(lambda: len(workers(leftover)) == WORKERS, "the leftover's workers")
    left_workers = workers(leftover)
    os.kill(old, signal.SIGWINCH)
    wait_for(lambda: workers(old, but=leftover) == [], "the old master's workers stopped")
    done = site.switch("releases/B")
    assert done.returncode == 0, done.stderr
    (hup,) = site.times("got HUP", [old])
    (term,) = site.times("got TERM", [leftover])
    started = {int(pid) for pid in site.registry.read_text().split()} - set(left_workers)
    fresh = [when for when in site.times("ready", started) if hup < when < term]
    assert len(fresh) == WORKERS  # the old master had its workers back, ready, before


def test_a_conf_without_the_hooks_counts_forked_workers_and_says_so(site: Site) -> None:
    site.hooked(False)  # gunicorn.conf.py rendered before the ready markers: no worker writes one
    old = site.start("A")
    done = site.switch("releases/B")
    assert done.returncode == 0, done.stderr
    assert f"{site.conf} has no ready-marker hooks (rendered by an older fabdeploy)" in done.stdout
    assert "run `fab setup` to render it again" in done.stdout
    assert f"switched: master {old} -> " in done.stdout and site.markers() == set()
    serving(site, site.pids()[0], "B")  # type: ignore[arg-type]


def test_stale_ready_markers_are_removed_and_others_kept(site: Site) -> None:
    old = site.start("A")
    wait_for(lambda: len(site.markers()) == WORKERS, "the old workers' markers")
    dead = subprocess.Popen(["true"])
    dead.wait()
    here = Path("/proc/self/stat").read_text().rpartition(")")[2].split()[19]
    planted = {
        f"ready.{dead.pid}.1",  # a process gone
        f"ready.{workers(old)[0]}.1",  # a live pid, another start time: a reused pid
        f"ready.{os.getpid()}.{here}",  # a live process, its own start time: kept
        "ready.x",  # not a marker's name: kept
    }
    for name in planted:
        (site.pidfile.parent / name).touch()
    done = site.switch("releases/B")
    assert done.returncode == 0, done.stderr
    kept = site.markers() - {
        f"ready.{pid}.{Path(f'/proc/{pid}/stat').read_text().rpartition(')')[2].split()[19]}"
        for pid in workers(site.pids()[0])
    }
    assert kept == {f"ready.{os.getpid()}.{here}", "ready.x"}


def test_fake_workers_and_the_rendered_conf_agree_on_the_hook(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=hello\nHOSTS=web1\n")
    assert fake_gunicorn.READY_HOOK == service.READY_HOOK
    assert service.READY_HOOK in units.render_gunicorn_conf(config.build("staging", tmp_path))


# --- nothing to serve ----------------------------------------------------------------------


def test_a_missing_release_exits_3_and_changes_nothing(site: Site) -> None:
    old = site.start("A")
    done = site.switch("releases/nope")
    assert done.returncode == 3
    assert "release releases/nope does not exist" in done.stderr
    assert site.target() == "releases/A"
    serving(site, old, "A")


def test_no_current_and_no_release_given_exits_3(site: Site) -> None:
    done = site.switch("")
    assert done.returncode == 3
    assert "no release to serve: current is missing" in done.stderr
    assert site.target() is None and site.pids() == (None, None)
    assert not site.calls.exists()


# --- failures of a first start -------------------------------------------------------------


def test_a_failed_systemctl_start_puts_current_back(site: Site) -> None:
    site.point("A")
    (site.root / "start-fails").touch()
    done = site.switch("releases/B")
    assert done.returncode == 1
    assert f"start failed: systemctl start {SERVICE} failed" in done.stderr
    assert "current is back on A" in done.stderr
    assert f"--- last lines of {site.log} ---" in done.stderr
    assert site.target() == "releases/A"
    assert site.calls.read_text().split() == ["start", "--", SERVICE, "stop", "--", SERVICE]


def test_an_unhealthy_first_start_is_stopped_and_current_removed(site: Site) -> None:
    site.release("B", health=500)
    done = site.switch("releases/B")
    assert done.returncode == 1
    assert f"start failed: health check {site.url} answered 500" in done.stderr
    assert site.target() is None  # there was none before
    assert site.calls.read_text().split() == ["start", "--", SERVICE, "stop", "--", SERVICE]
    assert site.pids() == (None, None)  # the started master was stopped
    started = [int(pid) for pid in site.registry.read_text().split()]
    assert started and not any(alive(pid) for pid in started)


# --- failures of a switch: each rolls back -------------------------------------------------


def rolled_back(site: Site, done: subprocess.CompletedProcess[str], old: int) -> None:
    """The switch failed and the old master serves release A again, alone."""
    assert done.returncode == 1, done.stdout
    assert f"rolling back: current -> A, old master {old} keeps serving" in done.stderr
    assert f"--- last lines of {site.log} ---" in done.stderr
    assert site.target() == "releases/A"
    serving(site, old, "A")

    def strays() -> list[int]:  # a new master's workers take a moment to see it gone
        started = [int(pid) for pid in site.registry.read_text().split()]
        return [pid for pid in started if pid != old and alive(pid) and pid not in workers(old)]

    wait_for(lambda: not strays(), "only the old master and its workers running", seconds=3)


def test_a_refused_usr2_rolls_back(site: Site) -> None:
    old = site.start("A")
    done = site.switch("releases/B", refuse="kill -USR2 *")
    assert f"switch failed: cannot signal master {old}" in done.stderr
    rolled_back(site, done, old)
    assert site.pids() == (old, None)


def test_a_new_master_exiting_while_booting_rolls_back(site: Site) -> None:
    site.release("B", boot_exit=True)
    old = site.start("A")
    done = site.switch("releases/B")
    assert "switch failed: the new master exited while booting" in done.stderr
    rolled_back(site, done, old)


@pytest.mark.parametrize(
    ("release", "fake"),
    [("B", {"workers": 1}), ("A", {"ignore": ["USR2"]})],
    ids=["too-few-workers", "usr2-ignored"],
)
def test_no_new_master_with_its_workers_in_time_rolls_back(
    site: Site, release: str, fake: dict[str, object]
) -> None:
    site.release(release, **fake)
    old = site.start("A")
    done = site.switch("releases/B", TIMEOUT=2)
    assert f"switch failed: no new master with {WORKERS} workers after 2s" in done.stderr
    rolled_back(site, done, old)
    wait_for(lambda: site.pids() == (old, None), "no .2 pidfile left")


def test_old_workers_that_do_not_stop_roll_back(site: Site) -> None:
    site.release("A", ignore=["WINCH"])
    old = site.start("A")
    before = workers(old)
    done = site.switch("releases/B")
    assert "switch failed: the old master's workers did not stop within 6s" in done.stderr
    rolled_back(site, done, old)
    assert not set(workers(old)) & set(before)  # HUP gave it fresh workers


def test_an_unhealthy_new_release_rolls_back(site: Site) -> None:
    site.release("B", health=500)
    old = site.start("A")
    done = site.switch("releases/B")
    assert f"switch failed: health check {site.url} answered 500" in done.stderr
    assert "new master " in done.stdout  # it got as far as the health check
    rolled_back(site, done, old)
    wait_for(lambda: site.pids() == (old, None), "the new master removed its .2 pidfile")


def test_a_release_whose_probed_page_answers_5xx_rolls_back(site: Site) -> None:
    site.release("B", page=500)
    old = site.start("A")
    home, other = site.url.replace("/health", "/"), site.url.replace("/health", "/about")
    done = site.switch("releases/B", PROBE_URLS=f"{other}\n{home}")
    assert f"probe {other} answered 500" in done.stdout  # the first fails: no more asked
    assert f"switch failed: probe {other} answered 500 (CANARY_URLS:" in done.stderr
    assert f"probe {home} " not in done.stdout
    rolled_back(site, done, old)


def test_probes_that_redirect_or_answer_4xx_pass_and_the_access_log_is_marked(
    site: Site,
) -> None:
    site.release("B", page=404)
    site.point("A")
    access = site.log.with_name("access.log")
    access.write_text("x" * 123)
    old = site.start("A")
    home = site.url.replace("/health", "/")
    done = site.switch("releases/B", PROBE_URLS=home, ACCESS_LOG=access)
    assert done.returncode == 0, done.stderr
    assert f"probe {home} answered 404" in done.stdout
    assert f"new release's requests: {access} from byte 123" in done.stdout
    assert service.probed(done.stdout) == {home: "404"}
    assert alive(site.pids()[0]) and not alive(old)


def test_a_first_start_whose_probe_fails_is_stopped(site: Site) -> None:
    site.release("B", page=502)
    home = site.url.replace("/health", "/")
    done = site.switch("releases/B", PROBE_URLS=home)
    assert done.returncode == 1
    assert f"start failed: probe {home} answered 502 (CANARY_URLS:" in done.stderr
    assert site.target() is None and site.pids() == (None, None)


# --- through service.switch and detach.sh --------------------------------------------------


def test_run_switch_runs_the_script_detached_and_reports(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = site.server.server_address[1]
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text(
        f"APP_NAME=hello\nHOSTS=web1\nDEPLOY_ROOT={site.root}\nAPP_USER={APP_USER}\n"
        f"BIND=127.0.0.1:{port}\nWORKERS={WORKERS}\nHEALTH_TIMEOUT=5\nPYTHON={sys.executable}\n"
    )
    settings = config.build("staging", tmp_path)
    monkeypatch.setenv("PATH", f"{site.bin}:{os.environ['PATH']}")
    out = io.StringIO()
    host = ssh_host.Host(LocalConnection(), settings, output.Output(out, out))  # type: ignore[arg-type]
    old = site.start("A")
    assert service.current_release(host) == "A" and service.master_pid(host) == old
    done = service.switch(host, "B")
    assert done == service.Switched(release="B", previous="A", started=False)
    assert service.current_release(host) == "B" and service.master_pid(host) == site.pids()[0]
    serving(site, site.pids()[0], "B")  # type: ignore[arg-type]
