# The logs of one host (monitor.logs): the journal of the service and of its companion
# processes, then the app's log files under shared/log, found and read as the app user, whose
# directory it is (docs/security.md#ownership).
#
# In: APP_USER JOURNAL_UNITS (every unit of the environment, one a line: the same journalctl
#     command line on every host, a fixed line of the sudoers rule; a unit a host does not run
#     adds nothing) LOGDIR PATTERNS (globs relative to LOGDIR, one a line) LINES (lines of each
#     to show first) FOLLOW (yes: keep streaming).
# Out: "==> journal of <units> <==", the journal's lines, then tail's "==> <file> <==" and
#      each file's last lines. Following, journalctl and tail run in the background until
#      this script's stdin closes (the client going away), then are stopped, so nothing is
#      left tailing on the host.
units=() names=()  # the web service and every companion process
while IFS= read -r unit; do
  [ -z "$unit" ] || { units+=(-u "$unit"); names+=("$unit"); }
done <<< "$JOURNAL_UNITS"
pick() {  # LOGDIR FOLLOW PATTERN...: the log files the patterns match, one a line (run as the
  # app user)
  local dir=$1 waiting=$2 pattern f matched
  local -A seen=()
  shift 2
  shopt -s nullglob
  for pattern in "$@"; do
    [ -n "$pattern" ] || continue
    matched=no
    for f in "$dir"/$pattern; do
      if [ ! -f "$f" ] || [ -n "${seen[$f]-}" ]; then continue; fi
      seen[$f]=1
      printf '%s\n' "$f"
      matched=yes
    done
    if [ "$matched" = no ] && [ "$waiting" = yes ] && [ "$pattern" = error.log ]; then
      printf '%s\n' "$dir/error.log"  # tail -F waits for it
    fi
  done
}
mapfile -t globs <<< "$PATTERNS"
# shellcheck disable=SC2016  # "$@" is the inner bash's
mapfile -t files < <(as_app bash -c "$(declare -f pick)"'; pick "$@"' _ "$LOGDIR" "$FOLLOW" "${globs[@]}" 2>/dev/null)
if [ "$FOLLOW" = yes ]; then
  sudo -n journalctl "${units[@]}" -n "$LINES" -f --no-pager 2>&1 &
  journal=$!
  tail=""
  if [ ${#files[@]} -gt 0 ]; then
    as=()  # the background job is the process itself (sudo relays the signal), not a function
    [ "$(id -un)" = "$APP_USER" ] || as=(sudo -n -u "$APP_USER" --)
    "${as[@]}" tail -n "$LINES" -v -F -- "${files[@]}" 2>&1 &
    tail=$!
  else
    echo "(no log files under $LOGDIR match ${globs[*]})"
  fi
  cat > /dev/null || true
  kill $journal $tail 2>/dev/null || true
  wait 2>/dev/null || true
  exit 0
fi
echo "==> journal of ${names[*]} <=="
sudo -n journalctl "${units[@]}" -n "$LINES" --no-pager 2>&1 \
  || echo "(journal unavailable: journalctl failed, or sudo refused it: docs/security.md#sudo)"
if [ ${#files[@]} -gt 0 ]; then
  as_app tail -n "$LINES" -v -- "${files[@]}" 2>&1 || true
else
  echo "(no log files under $LOGDIR match ${globs[*]})"
fi
