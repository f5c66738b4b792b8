"""Stage run: start, stop, restart and reload the app as a systemd service.

The zero-downtime switch is gunicorn's USR2 re-exec handshake. The unit starts
``<root>/current/.venv/bin/python -m gunicorn`` with ``chdir = <root>/current``, paths not
resolved, so a master re-exec'd by USR2 loads the release `current` points to at that moment,
with that release's venv. `switch` (one script, one round trip, run on the host detached from
the SSH session: a fab killed at any moment leaves the switch to finish, or go back, by itself):

1. points `current` at the new release (``ln -sfn`` to a temporary link renamed over it);
2. sends USR2 to the running master and waits for the new master (gunicorn >= 20 writes its pid
   to ``gunicorn.pid.2`` until the old one exits) to have WORKERS *ready* workers: each
   worker, once it has loaded the app and can answer, writes ``shared/pids/ready.<pid>.<start
   time>`` (gunicorn.conf.py's ``post_worker_init``; the old workers serve meanwhile, for up
   to `ready_timeout` seconds);
3. sends WINCH to the old master, which stops its workers gracefully and keeps listening fds
   open, and waits until those workers are gone: from then on only the new release's workers
   accept, so the health check tests it (an old worker that has not yet handled the signal
   could otherwise answer for the new release);
4. health-checks `health_url` (BIND's address, 127.0.0.1 for a wildcard; bash's /dev/tcp);
5. writes the new pid into the PIDFile (systemd re-reads it when the old main process exits,
   so it keeps tracking the service) and sends TERM to the old master, waiting for it to exit.

A failure before 5 puts `current` back, HUPs the old master (its new workers load the old
release again) and waits until they are ready, then TERMs the new master: requests never lack
a worker. A gunicorn.conf.py rendered before the ready markers existed makes the switch count
forked workers instead, and say so.
With no master running (first deploy) it starts the service and health-checks it instead; on
failure it stops it and puts `current` back as it was.

The switch is ``scripts/switch.sh`` (docs/scripts.md), tested under local bash with fake
masters in tests/unit/test_switch_script.py.

Functions other modules compose: `switch(host, release)`, `current_release(host)`,
`master_pid(host)`, `health(host)`, `healthy(status)` (the one rule: 200), `start(host)`,
`stop(host)`, `restart(host)`, `health_url(settings)`, and `health_env(settings)` for
scripts that wait for a port's health themselves (lib.sh's ``wait_healthy``).
"""

from __future__ import annotations

from invoke import Collection, task

from .host.service import reload_host, restart, start, stop
from .ssh import fanout

PROCESS_HELP = {
    "process": "a companion process (PROCESS_<NAME>), web, or all; default: the web service"
}


@task(name="start", help=PROCESS_HELP)
def start_(c, process=""):  # type: ignore[no-untyped-def]
    """Start the app's service (or --process NAME) on each host."""
    fanout.on_each_host(c, "start", lambda host: start(host, process))


@task(name="stop", help=PROCESS_HELP)
def stop_(c, process=""):  # type: ignore[no-untyped-def]
    """Stop the app's service (or --process NAME) on each host."""
    fanout.on_each_host(c, "stop", lambda host: stop(host, process))


@task(name="restart", help=PROCESS_HELP)
def restart_(c, process=""):  # type: ignore[no-untyped-def]
    """Restart the app's service (a short outage; prefer reload), or --process NAME."""
    fanout.on_each_host(c, "restart", lambda host: restart(host, process))


@task
def reload(c):  # type: ignore[no-untyped-def]
    """Reload gracefully onto the release `current` points to, no dropped request."""
    fanout.on_each_host(c, "reload", reload_host)


ns = Collection("run")
ns.add_task(start_, default=True)
ns.add_task(stop_)
ns.add_task(restart_)
ns.add_task(reload)
