"""A fake gunicorn master for tests/unit/test_switch_script.py: pidfiles, workers, signals.

``python fake_gunicorn.py PIDFILE WORKERS CHDIR LOG REGISTRY CONF``, started in CHDIR (a
release, through `current`). Like gunicorn it writes its pid to PIDFILE, or, when it is the
master a USR2 re-exec'd (``FAKE_REEXEC=1``), to ``PIDFILE.2`` until its parent (the old master)
exits, then renames that to PIDFILE. It keeps WORKERS worker processes as its children
(workers exit when their master goes). When CONF holds `READY_HOOK` (as the gunicorn.conf.py
setup renders does, read again by each master and by HUP), each worker writes its ready marker
``ready.<pid>.<start time>`` beside PIDFILE, as the ``post_worker_init`` hook does, once it has
"loaded the app": ``ready_after`` seconds after it started (0.2; negative: never). Signals, as
gunicorn's:

- USR2: fork, chdir to CHDIR (resolving `current` again) and exec a new master there;
- WINCH: stop the workers and start no more;
- HUP: replace the workers (and start them again after a WINCH);
- TERM: stop the workers, remove its own pidfile, exit.

The release it runs may change that, in ``fake.json`` in its directory:
``{"workers": 1, "ignore": ["USR2", "WINCH", "TERM"], "boot_exit": true, "ready_after": 2}``
(``boot_exit``: a re-exec'd master exits while booting, before any worker, leaving its ``.2``
pidfile behind). Every process started appends its pid to REGISTRY, so that the tests can stop
them all. The log says when things happen, on the clock every process shares
(``time.monotonic()``): ``[pid] ready at T`` (a worker's marker), ``[pid] got WINCH at T`` (and
HUP, TERM), so that a test can tell what came first.
"""

import contextlib
import json
import os
import signal
import sys
import time

#: As tasks/run.py's READY_HOOK (a unit test checks they agree).
READY_HOOK = "fabdeploy-ready-markers"
SIGNALS = {
    "USR2": signal.SIGUSR2,
    "WINCH": signal.SIGWINCH,
    "HUP": signal.SIGHUP,
    "TERM": signal.SIGTERM,
}


def register(registry: str) -> None:
    """Append this process's pid to the registry file."""
    with open(registry, "a") as handle:
        handle.write(f"{os.getpid()}\n")


def say(log: str, text: str) -> None:
    """A line in the error log (what the switch shows when it fails)."""
    with open(log, "a") as handle:
        handle.write(f"[{os.getpid()}] {text}\n")


def mark_ready(pidfile: str, log: str) -> None:
    """Write this process's ready marker as the post_worker_init hook does."""
    with open("/proc/self/stat") as handle:
        start = handle.read().rpartition(")")[2].split()[19]
    marker = os.path.join(os.path.dirname(pidfile), f"ready.{os.getpid()}.{start}")
    with open(marker, "w"):
        pass
    say(log, f"ready at {time.monotonic():.6f}")


def worker(registry: str, pidfile: str, log: str, ready_after: float | None) -> None:
    """A worker: runs until its master is gone or it is sent TERM; marks itself ready
    ``ready_after`` seconds after it started (None: never)."""
    for number in SIGNALS.values():
        signal.signal(number, signal.SIG_DFL)
    register(registry)
    master = os.getppid()
    ready_at = None if ready_after is None else time.monotonic() + ready_after
    while os.getppid() == master:
        if ready_at is not None and time.monotonic() >= ready_at:
            mark_ready(pidfile, log)
            ready_at = None
        time.sleep(0.05)
    os._exit(0)


def spawn(registry: str, pidfile: str, log: str, ready_after: float | None) -> int:
    """Fork one worker; its pid."""
    pid = os.fork()
    if pid == 0:
        worker(registry, pidfile, log, ready_after)
    return pid


def fake_json() -> dict:
    """The release's fake.json (in the working directory), {} without one."""
    if not os.path.exists("fake.json"):
        return {}
    with open("fake.json") as handle:
        return json.load(handle)


def readiness(conf_path: str) -> float | None:
    """Seconds after which a worker is ready (None: it writes no marker), as CONF and the
    release's fake.json say; read at boot and by HUP, as gunicorn reads its config."""
    try:
        with open(conf_path) as handle:
            hooked = READY_HOOK in handle.read()
    except FileNotFoundError:
        hooked = False
    delay = float(fake_json().get("ready_after", 0.2))
    return delay if hooked and delay >= 0 else None


def read(path: str) -> str:
    """The text of a pidfile ("" when there is none)."""
    try:
        with open(path) as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return ""


def stop(pids: set[int]) -> None:
    """Send TERM to every worker in ``pids``."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def reap(workers: set[int]) -> None:
    """Collect every child that exited (workers and re-exec'd masters)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        workers.discard(pid)


def main() -> None:
    pidfile, count, chdir, log, registry, conf_path = sys.argv[1:7]
    conf = fake_json()
    register(registry)
    reexec = os.environ.pop("FAKE_REEXEC", "") == "1"
    mine = pidfile + ".2" if reexec else pidfile
    pending: list[str] = []
    for name, number in SIGNALS.items():
        if name in conf.get("ignore", []):
            signal.signal(number, signal.SIG_IGN)
        else:
            signal.signal(number, lambda _n, _f, name=name: pending.append(name))
    with open(mine + ".tmp", "w") as handle:
        handle.write(f"{os.getpid()}\n")
    os.rename(mine + ".tmp", mine)
    say(log, f"booting master in {os.path.basename(os.getcwd())}")
    if reexec and conf.get("boot_exit"):
        time.sleep(0.3)
        say(log, "cannot boot: exiting")
        os._exit(1)
    parent = os.getppid()
    wanted = int(conf.get("workers", count))
    ready_after = readiness(conf_path)
    workers: set[int] = set()
    winched = False
    while True:
        reap(workers)
        while pending:
            name = pending.pop(0)
            say(log, f"got {name} at {time.monotonic():.6f}")
            if name == "USR2" and os.fork() == 0:
                os.chdir(chdir)
                os.environ["FAKE_REEXEC"] = "1"
                os.execv(sys.executable, [sys.executable, __file__, *sys.argv[1:]])
            elif name in ("WINCH", "HUP"):
                stop(workers)
                winched = name == "WINCH"
                ready_after = readiness(conf_path)
            elif name == "TERM":
                stop(workers)
                if read(mine) == str(os.getpid()):
                    os.unlink(mine)
                sys.exit(0)
        if not winched and len(workers) < wanted:
            workers.add(spawn(registry, pidfile, log, ready_after))
        if mine != pidfile and os.getppid() != parent:  # the old master exited: promoted
            if read(mine) == str(os.getpid()):
                os.rename(mine, pidfile)
            mine = pidfile
        time.sleep(0.02)


if __name__ == "__main__":
    main()
