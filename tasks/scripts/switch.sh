# The zero-downtime switch (run.switch): serve NEW_TARGET through gunicorn's USR2 re-exec,
# or start the service when no master runs; on any failure the host serves what it served.
#
# In: APP_USER ROOT CURRENT TMP_LINK PIDFILE ERROR_LOG SERVICE URL (the health URL) WORKERS
#     TIMEOUT (seconds for the new master and its health) GRACE (seconds an old master has
#     to exit) TAIL (error.log lines shown on failure) ANSWER_GRACE, and NEW_TARGET
#     (releases/<name>; empty: the release `current` points to).
# Out: "started <service> (master <pid>), serving <release>: health <status>" or
#      "switched: master <old> -> <new>, serving <release>: health <status>", exit 0.
#      Failures go to stderr ("switch failed: ...", "rolling back: ...", "start failed: ..."
#      and the error log's last lines), exit 1; exit 3: no release to serve.
# Steps and why: docs/run.md; each branch is tested in tests/unit/test_switch_script.py.
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
old_target=$(current_target)
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
    [ "$(current_target)" = "$old_target" ] || relink "$old_target"
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
  [ "$(current_target)" = "$old_target" ] || relink "$old_target"
  # setup's files a deploy put in place first (converge.sh) go back before the old master
  # reloads (HUP re-reads gunicorn.conf.py and the secrets)
  if declare -F setup_files_back >/dev/null; then setup_files_back; fi
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
# shellcheck disable=SC2016  # $1 and $2 are the inner shell's
as_app sh -c 'printf "%s\n" "$1" > "$2.fabdeploy" && mv -f "$2.fabdeploy" "$2"' _ "$new" "$PIDFILE"
as_app kill -TERM "$old"
if ! wait_gone "$old" "$GRACE"; then
  echo "old master $old still running after ${GRACE}s: killing it"
  as_app kill -KILL "$old" || true
fi
echo "switched: master $old -> $new, serving ${new_target##*/}: health $code"
