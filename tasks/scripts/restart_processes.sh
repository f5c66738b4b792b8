# shellcheck shell=bash
# Restart the app's companion process units and check that each stays up.
#
# In: UNITS (one unit a line), SETTLE (seconds a process must stay up), LINES (journal lines
# shown for one that does not), VERB (restart | start | stop).
# A restart waits for the old process to stop (TERM, then KILL after the unit's
# TimeoutStopSec), so a worker finishes the task it is running first.
# Out: "<unit>: running (pid <pid>)" per unit; for one that did not come back, its journal on
# stderr and exit 1.
mapfile -t units <<< "${UNITS:?}"
[ -n "${units[0]:-}" ] || exit 0
since=$(date +%s)
jobs_=()  # one unit a command (a fixed line of the sudoers rule each), all at once
for unit in "${units[@]}"; do sudo -n systemctl "$VERB" -- "$unit" & jobs_+=($!); done
for job in "${jobs_[@]}"; do wait "$job" || true; done
[ "$VERB" = stop ] && exit 0
declare -A pid restarts
for unit in "${units[@]}"; do
  pid[$unit]=$(systemctl show -p MainPID --value -- "$unit")
  restarts[$unit]=$(systemctl show -p NRestarts --value -- "$unit")
done
sleep "$SETTLE"
failed=0
for unit in "${units[@]}"; do
  state=$(systemctl show -p ActiveState --value -- "$unit")
  now=$(systemctl show -p MainPID --value -- "$unit")
  again=$(systemctl show -p NRestarts --value -- "$unit")
  if [ "$state" = active ] && [ "$now" != 0 ] && [ "$now" = "${pid[$unit]}" ] \
     && [ "$again" = "${restarts[$unit]}" ]; then
    echo "$unit: running (pid $now)"
  else
    failed=1
    echo "$unit did not come back: $state (pid ${pid[$unit]} -> $now); its journal:" >&2
    sudo -n journalctl -u "$unit" --since "@$since" -n "$LINES" --no-pager -o cat >&2 || true
  fi
done
exit $failed
