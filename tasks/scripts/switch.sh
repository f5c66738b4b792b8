# The zero-downtime switch (service.switch): serve NEW_TARGET through gunicorn's USR2 re-exec,
# or start the service when no master runs; on any failure the host serves what it served.
#
# Runs as the deploy user: `current` is its own; what is the app user's (the pidfile and ready
# markers in /run/<app>, the error log, the masters' signals) goes through as_app, and of
# /run/<app> the deploy user only lists names (docs/security.md#ownership).
#
# In: APP_USER ROOT CURRENT TMP_LINK PIDFILE ERROR_LOG SERVICE URL (the health URL) WORKERS
#     READY_TIMEOUT (seconds for a new master's workers to be ready; the old ones serve
#     meanwhile) TIMEOUT (seconds for health, once ready or started) GRACE (seconds an old
#     master has to exit) TAIL (error.log lines shown on failure) ANSWER_GRACE, CONF
#     (gunicorn.conf.py) READY_HOOK (the text that says CONF has the ready-marker hooks), and
#     NEW_TARGET (releases/<name>; empty: the release `current` points to), PROBE_URLS (one
#     a line: requested once healthy, a 5xx or no answer fails the switch; empty: none) and
#     ACCESS_LOG (set: say its size once only the new release serves, for the canary's count).
# Out: "probe <url> answered <status>" for each of PROBE_URLS, "new release's requests:
#      <ACCESS_LOG> from byte <n>" with ACCESS_LOG, then
#      "started <service> (master <pid>), serving <release>: health <status>" or
#      "switched: master <old> -> <new>, serving <release>: health <status>", exit 0.
#      Failures go to stderr ("switch failed: ...", "rolling back: ...", "start failed: ..."
#      and the error log's last lines), exit 1; exit 3: no release to serve.
# Steps and why: docs/run.md; each branch is tested in tests/unit/test_switch_script.py.
kids() {  # PID [EXCEPT] -> the pids of PID's child processes (EXCEPT left out), one a line
  local found kid
  if [ -r "/proc/$1/task/$1/children" ]; then
    found=$(cat "/proc/$1/task/$1/children" 2>/dev/null || true)
  else
    found=$(pgrep -P "$1" 2>/dev/null || true)
  fi
  for kid in $found; do [ "$kid" = "${2:-}" ] || echo "$kid"; done
}
children() {  # PID [EXCEPT] -> how many child processes PID has (EXCEPT not counted)
  local n=0 kid
  for kid in $(kids "$@"); do n=$((n + 1)); done
  echo $n
}
started_at() {  # PID -> its start time (clock ticks after boot, /proc's field 22); "" if gone
  local stat fields
  { read -r stat < "/proc/$1/stat"; } 2>/dev/null || return 0
  read -ra fields <<< "${stat##*) }"
  echo "${fields[19]:-}"
}
mark_access() {  # with ACCESS_LOG: its size now, where the new release's requests begin
  [ -n "${ACCESS_LOG:-}" ] || return 0
  local size
  size=$(as_app stat -c %s -- "$ACCESS_LOG" 2>/dev/null) || size=0
  echo "new release's requests: $ACCESS_LOG from byte ${size:-0}"
}
ready_dir=${PIDFILE%/*}
ready() {  # PID [EXCEPT] -> how many of PID's children (EXCEPT not counted) are ready workers:
  # with the hooks, those that wrote ready.<pid>.<start time> (the pid and start time of the
  # live process, so a stale marker or a reused pid never counts; names listed, never opened);
  # without, every child
  local n=0 kid names=""
  [ "$hooked" = no ] || names=$(ls -A -- "$ready_dir" 2>/dev/null) || true
  for kid in $(kids "$@"); do
    if [ "$hooked" = no ] || grep -qxF -- "ready.$kid.$(started_at "$kid")" <<< "$names"; then
      n=$((n + 1))
    fi
  done
  echo $n
}
wait_ready() {  # PID EXCEPT SECONDS: until PID has $WORKERS ready workers; false on timeout
  local until=$((SECONDS + $3))
  while [ "$(ready "$1" "$2")" -lt "$WORKERS" ]; do
    alive "$1" && [ $SECONDS -lt $until ] || return 1
    sleep 0.1
  done
  [ "$hooked" = yes ] || sleep 0.5  # forked workers: give them a moment to load the app
}
clean_markers() {  # remove ready markers whose process is gone (its pid and start time)
  local path name stale=()
  for path in "$ready_dir"/ready.*; do
    name=${path##*/ready.}
    [[ $name =~ ^([0-9]+)\.([0-9]+)$ ]] || continue
    [ "$(started_at "${BASH_REMATCH[1]}")" = "${BASH_REMATCH[2]}" ] || stale+=("$path")
  done
  [ ${#stale[@]} -eq 0 ] || as_app rm -f -- "${stale[@]}" || true
}
relink() {  # TARGET: point current at it atomically ("" removes current); the deploy user's
  if [ -z "$1" ]; then rm -f -- "$CURRENT"; return; fi
  ln -sfn -- "$1" "$TMP_LINK"
  mv -T -- "$TMP_LINK" "$CURRENT"
}
wait_gone() {  # PID SECONDS
  local until=$((SECONDS + $2))
  while alive "$1"; do [ $SECONDS -ge $until ] && return 1; sleep 0.1; done
}
tail_log() {
  echo "--- last lines of $ERROR_LOG ---" >&2
  as_app tail -n "$TAIL" -- "$ERROR_LOG" >&2 2>/dev/null || true
}
new_master() {  # OLD: the pid of the master OLD's USR2 started, once it wrote gunicorn.pid.2
  # (or took the pidfile over, OLD gone); "" until then. Read as the app user only when the
  # listing shows it: the wait polls names, not sudo.
  local pid
  if listed "$ready_dir" "${PIDFILE##*/}.2"; then app_pid "$PIDFILE.2"; return; fi
  alive "$1" && return
  pid=$(app_pid "$PIDFILE")
  [ "$pid" = "$1" ] || echo "$pid"
}
old=$(app_pid "$PIDFILE")
old_target=$(current_target)
new_target=${NEW_TARGET:-$old_target}
[ -n "$new_target" ] || { echo "no release to serve: current is missing" >&2; exit 3; }
[ -d "$ROOT/$new_target" ] || { echo "release $new_target does not exist" >&2; exit 3; }
deadline=$((SECONDS + TIMEOUT))

# A worker is ready once it has loaded the app and can answer: gunicorn.conf.py's hooks write
# its marker then (docs/run.md#ready-workers). A gunicorn.conf.py rendered before them has no
# markers: then a forked worker counts, as it did, and the switch says so.
hooked=yes
if ! as_app grep -qF -- "$READY_HOOK" "$CONF" 2>/dev/null; then
  hooked=no
  echo "$CONF has no ready-marker hooks (rendered by an older fabdeploy): counting forked" \
    "workers, which may not have loaded the app yet; run \`fab setup\` to render it again"
fi
clean_markers

if ! alive "$old"; then
  # Not running (first deploy, or stopped): start the service on the new release.
  [ "$new_target" = "$old_target" ] || relink "$new_target"
  fail_start() {
    echo "start failed: $*" >&2
    sudo -n systemctl stop -- "$SERVICE" >/dev/null 2>&1 || true
    [ "$(current_target)" = "$old_target" ] || relink "$old_target"
    [ -n "$old_target" ] && echo "current is back on ${old_target##*/}" >&2
    tail_log
    exit 1
  }
  mark_access
  sudo -n systemctl start -- "$SERVICE" || fail_start "systemctl start $SERVICE failed"
  pid=$(app_pid "$PIDFILE")
  code=$(wait_healthy "$URL" $((deadline - SECONDS > 0 ? deadline - SECONDS : 1)) "$pid") \
    || fail_start "health check $URL answered $code"
  # shellcheck disable=SC2154  # $bad: set by lib.sh's probe_urls
  probe_urls "${PROBE_URLS:-}" || fail_start "$bad (CANARY_URLS: a 5xx or no answer fails the switch)"
  # Serving already; a start reports once every worker is ready, as a switch does.
  pid=$(app_pid "$PIDFILE")
  wait_ready "$pid" "" "$READY_TIMEOUT" \
    || echo "started, but $(ready "$pid") of $WORKERS workers ready after ${READY_TIMEOUT}s"
  echo "started $SERVICE (master $(app_pid "$PIDFILE")), serving ${new_target##*/}: health $code"
  exit 0
fi

# A switch interrupted earlier (fab killed) may have left a second master (gunicorn.pid.2)
# beside the one in the pidfile: stop it first, and give the old master its workers back.
leftover=$(app_pid "$PIDFILE.2")
if alive "$leftover" && [ "$leftover" != "$old" ]; then
  echo "an interrupted switch left master $leftover beside $old: stopping it"
  if [ "$(children "$old" "$leftover")" -lt "$WORKERS" ]; then
    as_app kill -HUP "$old" || true
    wait_ready "$old" "$leftover" "$READY_TIMEOUT" || echo "the old master's workers were not" \
      "ready after ${READY_TIMEOUT}s: stopping $leftover anyway"
  fi
  as_app kill -TERM "$leftover" || true
  wait_gone "$leftover" "$GRACE" || as_app kill -KILL "$leftover" || true
fi
# Whatever else is named gunicorn.pid.2 (a dead master's pid, a file or link the app made that
# it cannot read) would stop the new master writing its pidfile: gone, as the app user.
if listed "${PIDFILE%/*}" "${PIDFILE##*/}.2" && ! alive "$(app_pid "$PIDFILE.2")"; then
  as_app rm -f -- "$PIDFILE.2" || true
fi

new=""
winched=no
rollback() {
  echo "rolling back: current -> ${old_target##*/}, old master $old keeps serving" >&2
  [ "$(current_target)" = "$old_target" ] || relink "$old_target"
  # setup's files a deploy put in place first (converge.sh) go back before the old master
  # reloads (HUP re-reads gunicorn.conf.py and the secrets)
  if declare -F setup_files_back >/dev/null; then setup_files_back; fi
  if [ "$winched" = yes ] && alive "$old"; then
    as_app kill -HUP "$old" || true  # fresh workers of the old release; the new ones serve meanwhile
    wait_ready "$old" "$new" "$READY_TIMEOUT" || echo "the old master's workers were not" \
      "ready after ${READY_TIMEOUT}s: stopping $new anyway" >&2
  fi
  if alive "$new"; then
    as_app kill -TERM "$new" 2>/dev/null || true
    wait_gone "$new" "$GRACE" || as_app kill -KILL "$new" 2>/dev/null || true
  fi
}
fail() {
  echo "switch failed: $*" >&2
  rollback
  clean_markers
  tail_log
  exit 1
}
[ "$new_target" = "$old_target" ] || relink "$new_target"
as_app kill -USR2 "$old" || fail "cannot signal master $old"
# The old workers serve until every new one is ready: only then WINCH.
began=$SECONDS
ready_by=$((SECONDS + READY_TIMEOUT))
seen=no
while :; do
  if [ -z "$new" ] || { [ $seen = no ] && ! alive "$new"; }; then new=$(new_master "$old"); fi
  if alive "$new"; then
    seen=yes
    [ "$(ready "$new")" -ge "$WORKERS" ] && break
  elif [ $seen = yes ]; then
    fail "the new master exited while booting"
  fi
  if [ $SECONDS -ge $ready_by ]; then
    if ! alive "$new" || [ "$(children "$new")" -lt "$WORKERS" ]; then
      fail "no new master with $WORKERS workers after ${READY_TIMEOUT}s"
    fi
    fail "the new master $new's workers were not ready after ${READY_TIMEOUT}s" \
      "($(ready "$new") of $WORKERS had loaded the app)"
  fi
  sleep 0.1
done
[ "$hooked" = yes ] || sleep 0.1
alive "$new" || fail "the new master $new exited while booting"
[ "$(ready "$new")" -ge "$WORKERS" ] || fail "the new master $new lost workers while booting"
if [ "$hooked" = yes ]; then
  echo "new master $new: $WORKERS workers ready (the app loaded) after $((SECONDS - began))s"
fi
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
mark_access
code=$(wait_healthy "$URL" "$TIMEOUT" "$new") || fail "health check $URL answered $code"
# shellcheck disable=SC2154  # $bad: set by lib.sh's probe_urls
probe_urls "${PROBE_URLS:-}" || fail "$bad (CANARY_URLS: a 5xx or no answer fails the switch)"
# shellcheck disable=SC2016  # $1 and $2 are the inner shell's
# (a new temp name each time, made exclusively: nothing planted at a fixed name is written)
as_app sh -c 't=$(mktemp "$2.XXXXXX") && printf "%s\n" "$1" > "$t" && mv -f "$t" "$2"' _ "$new" "$PIDFILE"
as_app kill -TERM "$old"
if ! wait_gone "$old" "$GRACE"; then
  echo "old master $old still running after ${GRACE}s: killing it"
  as_app kill -KILL "$old" || true
fi
clean_markers
echo "switched: master $old -> $new, serving ${new_target##*/}: health $code"
