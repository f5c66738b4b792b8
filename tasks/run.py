"""Stage run: start, stop, restart and reload the app as a systemd service.

The zero-downtime switch is gunicorn's USR2 re-exec handshake. The unit starts
``<root>/current/.venv/bin/python -m gunicorn`` with ``chdir = <root>/current``, paths not
resolved, so a master re-exec'd by USR2 loads the release `current` points to at that moment,
with that release's venv. `switch` (one script, one round trip, run on the host detached from
the SSH session: a fab killed at any moment leaves the switch to finish, or go back, by itself):

1. points `current` at the new release (``ln -sfn`` to a temporary link renamed over it);
2. sends USR2 to the running master and waits for the new master (gunicorn >= 20 writes its pid
   to ``gunicorn.pid.2`` until the old one exits) to have WORKERS workers;
3. sends WINCH to the old master, which stops its workers gracefully and keeps listening fds
   open, and waits until those workers are gone: from then on only the new release's workers
   accept, so the health check tests it (an old worker that has not yet handled the signal
   could otherwise answer for the new release);
4. health-checks ``http://127.0.0.1:<port><HEALTH_PATH>`` (bash's /dev/tcp, no process);
5. writes the new pid into the PIDFile (systemd re-reads it when the old main process exits,
   so it keeps tracking the service) and sends TERM to the old master, waiting for it to exit.

A failure before 5 puts `current` back, HUPs the old master (its new workers load the old
release again) and waits for them, then TERMs the new master: requests never lack a worker.
With no master running (first deploy) it starts the service and health-checks it instead; on
failure it stops it and puts `current` back as it was.

Functions other modules compose: `switch(host, release)`, `master_pid(host)`,
`health(host)`, `start(host)`, `stop(host)`, `restart(host)`, `health_url(settings)`, and
`HEALTH_SHELL`/`health_env(settings)` for scripts that need to probe a port themselves.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from invoke import Collection, task

from . import processes, remote, roles
from .config import WEB, Settings
from .errors import HostError
from .layout import Layout, release_name
from .remote import Host

#: How many lines of shared/log/error.log a failed switch or start prints.
LOG_TAIL = 30
#: Seconds a switch waits for an interrupted one still running on the host to end.
DETACHED_WAIT = 600
#: Seconds a release may keep answering the health path with another status than 200.
ANSWER_GRACE = 5

#: Bash functions for `Host.script` bodies (pass `health_env(settings)` in ``env``):
#: ``probe URL`` prints the HTTP status (000: no answer); ``alive PID`` is true for a live,
#: non-zombie process; ``wait_healthy URL SECONDS [PID]`` waits for a 200 and prints the last
#: status, giving up early when PID dies or the app keeps answering another status for
#: ANSWER_GRACE seconds (no answer at all waits the whole SECONDS).
HEALTH_SHELL = """
probe() {  # URL -> HTTP status; bash's /dev/tcp, no process started (000: no answer)
  local rest=${1#http://} hostport host port code
  hostport=${rest%%/*}
  host=${hostport%:*} port=${hostport##*:}
  host=${host#[} host=${host%]}
  if exec 3<>"/dev/tcp/$host/$port"; then
    printf 'GET /%s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "${rest#*/}" "$hostport" >&3
    if IFS=' ' read -r -t 5 _ code _ <&3 && [[ $code =~ ^[0-9]{3}$ ]]; then
      exec 3<&-
      echo "$code"
      return
    fi
    exec 3<&-
  fi 2>/dev/null
  echo 000
}
alive() {
  [[ ${1:-} =~ ^[0-9]+$ ]] && [ -r "/proc/$1/stat" ] || return 1
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}
wait_healthy() {
  local until=$((SECONDS + $2)) code=000 failing=""
  while :; do
    code=$(probe "$1")
    [ "$code" = 200 ] && { echo "$code"; return 0; }
    if [ -n "${3:-}" ] && ! alive "$3"; then echo "$code (master $3 exited)"; return 1; fi
    [ $SECONDS -ge $until ] && { echo "$code"; return 1; }
    if [ "$code" = 000 ]; then
      failing=""
    else  # the app answers, but not 200: give it a few seconds, not the whole timeout
      failing=${failing:-$SECONDS}
      [ $((SECONDS - failing)) -ge "$ANSWER_GRACE" ] && { echo "$code"; return 1; }
    fi
    sleep 0.1
  done
}
"""


def health_url(settings: Settings, port: int | None = None) -> str:
    """The URL of the health path as seen from the host itself."""
    host = settings.bind.rpartition(":")[0]
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host in ("[::]", "::"):
        host = "[::1]"
    return f"http://{host}:{port or settings.port}{settings.health_path}"


def health_env(settings: Settings) -> dict[str, object]:
    """The ``env`` `HEALTH_SHELL` needs."""
    return {
        "PROBE_PYTHON": settings.python,
        "ANSWER_GRACE": min(ANSWER_GRACE, settings.health_timeout),
    }


_SWITCH = """
children() {  # PID [EXCEPT] -> how many child processes PID has (EXCEPT not counted)
  local kids kid n=0
  if [ -r "/proc/$1/task/$1/children" ]; then
    kids=$(cat "/proc/$1/task/$1/children" 2>/dev/null || true)
  else
    kids=$(pgrep -P "$1" 2>/dev/null || true)
  fi
  for kid in $kids; do [ "$kid" = "${2:-}" ] || n=$((n + 1)); done
  echo $n
}
relink() {  # TARGET: point current at it atomically ("" removes current)
  if [ -z "$1" ]; then as_app rm -f -- "$CURRENT"; return; fi
  as_app ln -sfn -- "$1" "$TMP_LINK"
  as_app mv -T -- "$TMP_LINK" "$CURRENT"
}
wait_gone() {  # PID SECONDS
  local until=$((SECONDS + $2))
  while alive "$1"; do [ $SECONDS -ge $until ] && return 1; sleep 0.1; done
}
tail_log() {
  echo "--- last lines of $ERROR_LOG ---" >&2
  tail -n "$TAIL" -- "$ERROR_LOG" >&2 2>/dev/null || true
}
old=$(cat -- "$PIDFILE" 2>/dev/null || true)
old_target=$(readlink -- "$CURRENT" 2>/dev/null || true)
new_target=${NEW_TARGET:-$old_target}
[ -n "$new_target" ] || { echo "no release to serve: current is missing" >&2; exit 3; }
[ -d "$ROOT/$new_target" ] || { echo "release $new_target does not exist" >&2; exit 3; }
deadline=$((SECONDS + TIMEOUT))

if ! alive "$old"; then
  # Not running (first deploy, or stopped): start the service on the new release.
  [ "$new_target" = "$old_target" ] || relink "$new_target"
  fail_start() {
    echo "start failed: $*" >&2
    sudo -n systemctl stop "$SERVICE" >/dev/null 2>&1 || true
    [ "$(readlink -- "$CURRENT" 2>/dev/null || true)" = "$old_target" ] || relink "$old_target"
    [ -n "$old_target" ] && echo "current is back on ${old_target##*/}" >&2
    tail_log
    exit 1
  }
  sudo -n systemctl start "$SERVICE" || fail_start "systemctl start $SERVICE failed"
  pid=$(cat -- "$PIDFILE" 2>/dev/null || true)
  code=$(wait_healthy "$URL" $((deadline - SECONDS > 0 ? deadline - SECONDS : 1)) "$pid") \
    || fail_start "health check $URL answered $code"
  echo "started $SERVICE (master $(cat -- "$PIDFILE" 2>/dev/null)), serving ${new_target##*/}: health $code"
  exit 0
fi

# A switch interrupted earlier (fab killed) may have left a second master (gunicorn.pid.2)
# beside the one in the pidfile: stop it first, and give the old master its workers back.
leftover=$(cat -- "$PIDFILE.2" 2>/dev/null || true)
if alive "$leftover" && [ "$leftover" != "$old" ]; then
  echo "an interrupted switch left master $leftover beside $old: stopping it"
  if [ "$(children "$old" "$leftover")" -lt "$WORKERS" ]; then
    as_app kill -HUP "$old" || true
    until=$((SECONDS + TIMEOUT))
    while [ "$(children "$old" "$leftover")" -lt "$WORKERS" ] && [ $SECONDS -lt $until ]; do
      sleep 0.2
    done
    sleep 0.5
  fi
  as_app kill -TERM "$leftover" || true
  wait_gone "$leftover" "$GRACE" || as_app kill -KILL "$leftover" || true
fi

new=""
winched=no
rollback() {
  echo "rolling back: current -> ${old_target##*/}, old master $old keeps serving" >&2
  [ "$(readlink -- "$CURRENT" 2>/dev/null || true)" = "$old_target" ] || relink "$old_target"
  if [ "$winched" = yes ] && alive "$old"; then
    as_app kill -HUP "$old" || true
    local until=$((SECONDS + TIMEOUT))
    while [ "$(children "$old" "$new")" -lt "$WORKERS" ] && [ $SECONDS -lt $until ]; do
      sleep 0.2
    done
    sleep 0.5
  fi
  if alive "$new"; then
    as_app kill -TERM "$new" 2>/dev/null || true
    wait_gone "$new" "$GRACE" || as_app kill -KILL "$new" 2>/dev/null || true
  fi
}
fail() {
  echo "switch failed: $*" >&2
  rollback
  tail_log
  exit 1
}
[ "$new_target" = "$old_target" ] || relink "$new_target"
as_app kill -USR2 "$old" || fail "cannot signal master $old"
seen=no
while :; do
  new=$(cat -- "$PIDFILE.2" 2>/dev/null || true)
  if [ -z "$new" ]; then
    pid=$(cat -- "$PIDFILE" 2>/dev/null || true)
    [ "$pid" != "$old" ] && new=$pid
  fi
  if alive "$new"; then
    seen=yes
    [ "$(children "$new")" -ge "$WORKERS" ] && break
  elif [ $seen = yes ]; then
    fail "the new master exited while booting"
  fi
  [ $SECONDS -ge $deadline ] && fail "no new master with $WORKERS workers after ${TIMEOUT}s"
  sleep 0.1
done
sleep 0.1
alive "$new" || fail "the new master $new exited while booting"
[ "$(children "$new")" -ge "$WORKERS" ] || fail "the new master $new lost workers while booting"
echo "new master $new has $WORKERS workers; stopping the old master's workers"
as_app kill -WINCH "$old"
winched=yes
# Until they exit, the old workers may still accept a request: the health check must not
# reach them, or the old release would answer for the new one.
until=$((SECONDS + GRACE + 5))
while [ "$(children "$old" "$new")" -gt 0 ]; do
  [ $SECONDS -ge $until ] && fail "the old master's workers did not stop within $((GRACE + 5))s"
  sleep 0.05
done
code=$(wait_healthy "$URL" $((deadline - SECONDS > 1 ? deadline - SECONDS : 1)) "$new") \
  || fail "health check $URL answered $code"
as_app sh -c 'printf "%s\\n" "$1" > "$2.fabdeploy" && mv -f "$2.fabdeploy" "$2"' _ "$new" "$PIDFILE"
as_app kill -TERM "$old"
if ! wait_gone "$old" "$GRACE"; then
  echo "old master $old still running after ${GRACE}s: killing it"
  as_app kill -KILL "$old" || true
fi
echo "switched: master $old -> $new, serving ${new_target##*/}: health $code"
"""


@dataclass(frozen=True)
class Switched:
    """What a switch did on one host."""

    release: str  # the release now served
    previous: str  # the release served before ("" when none)
    started: bool  # True: the service was not running and was started


def _switch_env(host: Host, target: str) -> dict[str, object]:
    settings = host.settings
    paths = Layout(settings.deploy_root)
    return {
        **health_env(settings),
        "APP_USER": host.app_user,
        "ROOT": paths.root,
        "CURRENT": paths.current,
        "TMP_LINK": paths.current_tmp,
        "PIDFILE": paths.pidfile,
        "ERROR_LOG": paths.error_log,
        "SERVICE": settings.service,
        "URL": health_url(settings),
        "WORKERS": settings.workers,
        "TIMEOUT": settings.health_timeout,
        "GRACE": max(10, settings.health_timeout),
        "TAIL": LOG_TAIL,
        "NEW_TARGET": target,
    }


def detached(host: Host, body: str, env: dict[str, object]) -> dict[str, object]:
    """The ``env`` of ``scripts/detach.sh`` running ``body`` (with ``env`` in it) detached
    from the SSH session, so that a lost session never stops it half-way (``env`` is passed
    along as well: it is what the switch is given)."""
    return {
        **env,
        "DIR": Layout(host.settings.deploy_root).switch_runs,
        "ID": f"{release_name()}-{secrets.token_hex(3)}",
        "WAIT": DETACHED_WAIT,
        "BODY": remote.bash_text(body, env),
    }


def switch(host: Host, release: str | None = None, before: str | None = None) -> Switched:
    """Serve ``release`` (None: whatever `current` points to) without dropping a request.

    The switch runs on the host detached from the SSH session (``scripts/detach.sh``): if
    fab dies or the link drops, the switch still runs to its end, or back to the old release,
    on its own, so `current` always names the release the host serves. A switch started while
    an interrupted one still runs waits for it.

    ``before``, the release served now, when the caller knows it (saves a round trip).

    Raises `HostError` when the new release does not become healthy; the host then serves
    what it served before, and the last lines of the error log have been printed.
    """
    target = f"releases/{release}" if release else ""
    before = current_release(host) if before is None else before  # a deploy knows it already
    result = host.script(
        remote.shell("detach"),
        env=detached(host, remote.AS_APP + HEALTH_SHELL + _SWITCH, _switch_env(host, target)),
        warn=True,
        label="switch",
    )
    if result.failed:
        what = f"release {release}" if release else "the current release"
        raise HostError(host.name, f"switch to {what} failed; still serving {before or 'nothing'}")
    return Switched(release=release or before, previous=before, started="started " in result.stdout)


def current_release(host: Host) -> str:
    """The release `current` points to ("" when none)."""
    result = host.run(
        f"readlink {remote.quote(Layout(host.settings.deploy_root).current)} || true",
        hide=True,
        label="readlink current",
    )
    return result.stdout.strip().rpartition("/")[2]


def master_pid(host: Host) -> int | None:
    """The live gunicorn master's pid from the PIDFile (None: not running)."""
    result = host.script(
        HEALTH_SHELL
        + 'pid=$(cat -- "$PIDFILE" 2>/dev/null || true)\nif alive "$pid"; then echo "$pid"; fi\n',
        env={**health_env(host.settings), "PIDFILE": Layout(host.settings.deploy_root).pidfile},
        hide=True,
        label="read pidfile",
    )
    text = result.stdout.strip()
    return int(text) if text.isdigit() else None


def health(host: Host) -> tuple[bool, str]:
    """Probe the health path once on the host; (healthy, HTTP status)."""
    result = host.script(
        HEALTH_SHELL + 'probe "$URL"\n',
        env={**health_env(host.settings), "URL": health_url(host.settings)},
        hide=True,
        label="health",
    )
    code = result.stdout.strip()
    return code == "200", code


def _systemctl(host: Host, verb: str, process: str = "") -> list[str]:
    """``systemctl VERB`` the web service, or ``process`` (a companion process, `WEB`, or
    ``all``: the web service and every companion process the host runs); returns the units."""
    settings, units = host.settings, []
    if process in ("", WEB) or (process == "all" and roles.serves_web(settings, host.name)):
        host.run(f"systemctl {verb} {remote.quote(settings.service)}", sudo=True, label=verb)
        units.append(settings.service)
    if process not in ("", WEB):  # a companion stops gracefully; a start must stay up
        units += processes.control(host, verb, "" if process == "all" else process)
    return units


def start(host: Host, process: str = "") -> None:
    """``systemctl start`` the app's service (or ``process``)."""
    host.say(f"started {', '.join(_systemctl(host, 'start', process)) or 'nothing here'}")


def stop(host: Host, process: str = "") -> None:
    """``systemctl stop`` the app's service (or ``process``)."""
    host.say(f"stopped {', '.join(_systemctl(host, 'stop', process)) or 'nothing here'}")


def restart(host: Host, process: str = "") -> None:
    """``systemctl restart`` the app's service (requests fail while it restarts), or
    ``process`` (gracefully: TERM, up to STOP_TIMEOUT, then KILL)."""
    host.say(f"restarted {', '.join(_systemctl(host, 'restart', process)) or 'nothing here'}")


# --- tasks ---------------------------------------------------------------------------------


PROCESS_HELP = {
    "process": "a companion process (PROCESS_<NAME>), web, or all; default: the web service"
}


@task(name="start", help=PROCESS_HELP)
def start_(c, process=""):  # type: ignore[no-untyped-def]
    """Start the app's service (or --process NAME) on each host."""
    remote.on_each_host(c, "start", lambda host: start(host, process))


@task(name="stop", help=PROCESS_HELP)
def stop_(c, process=""):  # type: ignore[no-untyped-def]
    """Stop the app's service (or --process NAME) on each host."""
    remote.on_each_host(c, "stop", lambda host: stop(host, process))


@task(name="restart", help=PROCESS_HELP)
def restart_(c, process=""):  # type: ignore[no-untyped-def]
    """Restart the app's service (a short outage; prefer reload), or --process NAME."""
    remote.on_each_host(c, "restart", lambda host: restart(host, process))


@task
def reload(c):  # type: ignore[no-untyped-def]
    """Reload gracefully onto the release `current` points to, no dropped request."""
    remote.on_each_host(c, "reload", reload_host)


def reload_host(host: Host) -> None:
    """`switch` onto `current` where the host runs the web process; elsewhere nothing."""
    if roles.serves_web(host.settings, host.name):
        switch(host, None)
    else:
        host.say("reload: no web process on this host (its roles run none)")


ns = Collection("run")
ns.add_task(start_, default=True)
ns.add_task(stop_)
ns.add_task(restart_)
ns.add_task(reload)
