# What `fab check` reads on a host, changing nothing (run as the SSH user).
# In: ROOT SERVICE PORT PIDFILE. Prints key=value lines: disk_kib (free under ROOT), unit
# (`systemctl is-active`), port (free | ours | taken <process>) and master (its pid or "").
echo "disk_kib=$(df -Pk -- "$ROOT" 2>/dev/null | awk 'NR == 2 { print $4 }')"
echo "unit=$(systemctl is-active -- "$SERVICE" 2>/dev/null || true)"
master=$(cat -- "$PIDFILE" 2>/dev/null || true)
[[ $master =~ ^[0-9]+$ ]] && [ -d "/proc/$master" ] || master=""
echo "master=$master"
if ! command -v ss >/dev/null 2>&1; then echo "port=unknown (no ss on the host)"; exit 0; fi
listening=$(sudo -n ss -Hltnp "( sport = :$PORT )" 2>/dev/null || true)
if [ -z "$listening" ]; then echo "port=free"; exit 0; fi
for pid in $(printf '%s\n' "$listening" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
  parent=$(awk '{ print $4 }' "/proc/$pid/stat" 2>/dev/null || true)
  if [ -n "$master" ] && { [ "$pid" = "$master" ] || [ "$parent" = "$master" ]; }; then
    echo "port=ours"; exit 0
  fi
done
name=$(printf '%s\n' "$listening" | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n 1 || true)
echo "port=taken ${name#users:((}"
