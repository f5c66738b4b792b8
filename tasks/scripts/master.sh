# The live gunicorn master's pid, from the pidfile (service.master_pid).
#
# In: PIDFILE.
# Out: "pid=<pid>", or "pid=" when no live master is in the pidfile.
pid=$(cat -- "$PIDFILE" 2>/dev/null || true)
if alive "$pid"; then kv pid "$pid"; else kv pid ""; fi
