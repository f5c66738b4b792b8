# One host's load, memory, disk and release count (monitor.resources).
#
# In: ROOT RELEASES CURRENT.
# Out: key=value lines: load ("1m 5m 15m"), cpus, mem_total_kb, mem_available_kb, disk_path
#      (ROOT or its nearest existing parent), disk_total_kb, disk_free_kb, releases (how many
#      release directories), current (the release `current` points to, when there is one).
read -r l1 l5 l15 _ < /proc/loadavg && kv load "$l1 $l5 $l15"
kv cpus "$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
awk '/^MemTotal:/ {print "mem_total_kb=" $2} /^MemAvailable:/ {print "mem_available_kb=" $2}' /proc/meminfo
dir=$ROOT
while [ ! -e "$dir" ] && [ "$dir" != / ]; do dir=$(dirname "$dir"); done
kv disk_path "$dir"
df -Pk "$dir" | awk 'NR == 2 {print "disk_total_kb=" $2; print "disk_free_kb=" $4}'
count=0
if [ -d "$RELEASES" ]; then
  count=$(find "$RELEASES" -mindepth 1 -maxdepth 1 -type d | wc -l)
fi
kv releases "$count"
if [ -L "$CURRENT" ]; then kv current "$(current_release)"; fi
