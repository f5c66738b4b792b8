# What `fab check` reads on a host, changing nothing (run as the SSH user).
# In: ROOT SERVICE PORT PIDFILE APP_USER (the pidfile is read as the app user). Prints
# key=value lines: disk_kib (free under ROOT), unit (`systemctl is-active`), port (free | ours
# | taken <process>) and master (the live master's pid from PIDFILE, or "").
kv disk_kib "$(df -Pk -- "$ROOT" 2>/dev/null | awk 'NR == 2 { print $4 }')"
kv unit "$(systemctl is-active -- "$SERVICE" 2>/dev/null || true)"
master=$(app_pid "$PIDFILE")
alive "$master" || master=""
kv master "$master"
if ! command -v ss >/dev/null 2>&1; then kv port "unknown (no ss on the host)"; exit 0; fi
listening=$(sudo -n ss -Hltnp "( sport = :$PORT )" 2>/dev/null || true)
if [ -z "$listening" ]; then kv port free; exit 0; fi
for pid in $(printf '%s\n' "$listening" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
  parent=$(awk '{ print $4 }' "/proc/$pid/stat" 2>/dev/null || true)
  if [ -n "$master" ] && { [ "$pid" = "$master" ] || [ "$parent" = "$master" ]; }; then
    kv port ours; exit 0
  fi
done
name=$(printf '%s\n' "$listening" | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n 1 || true)
kv port "taken ${name#users:((}"
