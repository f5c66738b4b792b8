# The live gunicorn master's pid, from the pidfile (service.master_pid), read as the app user.
#
# In: PIDFILE APP_USER.
# Out: "pid=<pid>", or "pid=" when no live master is in the pidfile.
pid=$(app_pid "$PIDFILE")
if alive "$pid"; then kv pid "$pid"; else kv pid ""; fi
