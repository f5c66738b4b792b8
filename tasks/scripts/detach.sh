# Run BODY on the host detached from this SSH session, and follow it until it ends.
#
# In: DIR (where the runs live, e.g. <root>/.switch) ID (this run's name) BODY (a bash
#     program, its settings already in it) WAIT (seconds to wait for a run still going).
#
# BODY runs in a session of its own (setsid), its output in DIR/ID.log and its exit status
# in DIR/ID.rc when it ends. This script only follows the log and exits with that status:
# if the SSH session goes (fab killed, a lost link), BODY still runs to its end. Runs take
# DIR/lock one at a time, so a run started while an interrupted one still goes waits for it.
# DIR is the deploy user's own, 0700 (`fab setup` makes it; the deploy root is the deploy
# user's): nothing another user can write holds the script it runs.
[ -d "$DIR" ] || mkdir -m 0700 -- "$DIR"
script="$DIR/$ID.sh" log="$DIR/$ID.log" rc="$DIR/$ID.rc"
# keep the last runs' logs for whoever looks into an interrupted one
find "$DIR" -maxdepth 1 -type f \( -name '*.sh' -o -name '*.log' -o -name '*.rc' \) -mmin +1440 \
  -delete 2>/dev/null || true
rm -f -- "$rc"
printf '%s' "$BODY" > "$script" || { echo "cannot write $script (disk full?)" >&2; exit 4; }
: > "$log" || { echo "cannot write $log (disk full?)" >&2; exit 4; }
# shellcheck disable=SC2016  # expanded by the detached bash
setsid bash -c '
  exec 9>>"$1/lock"
  if flock -w "$4" 9; then bash "$2"; code=$?; else echo "another run held $1/lock for $4s" >&2; code=4; fi
  echo "$code" > "$3.tmp" && mv -f -- "$3.tmp" "$3"
' _ "$DIR" "$script" "$rc" "$WAIT" >> "$log" 2>&1 < /dev/null &
shown=0
while :; do
  ended=no
  [ -f "$rc" ] && ended=yes
  size=$(stat -c %s -- "$log" 2>/dev/null || echo 0)
  if [ "$size" -gt "$shown" ]; then
    tail -c +$((shown + 1)) -- "$log" | head -c $((size - shown)) || true
    shown=$size
  fi
  [ "$ended" = yes ] && break
  sleep 0.1
done
code=$(cat -- "$rc" 2>/dev/null || echo 4)
rm -f -- "$script"
exit "$code"
