# Run one of the app's commands (a migration, a hook) as the app runs (`appenv.run_bounded`), so
# that it never outlives the SSH session that started it, nor TIMEOUT seconds.
#
# In: DIR (the release, where it runs) VENV (yes: DIR/.venv first on PATH, DIR first on
#     PYTHONPATH) PYTHON (the host's, without VENV) WITH_SECRETS (the text of with_secrets.py)
#     SETTINGS (the app's settings file, read before the secrets)
#     COMMAND (the user's bash line, run as written) LABEL (how messages name it) TIMEOUT
#     (seconds; 0: no limit) GRACE (seconds between TERM and KILL).
# The command runs under `timeout`, in a process group of its own, its stdin /dev/null. When
# this script's stdin closes (fab was interrupted and closed it, or the session ended), or
# after TIMEOUT seconds, the whole group gets TERM, then KILL after GRACE seconds; nothing it
# started is left running on the host.
# Out: the command's output; exit its status. 124: it ran longer than TIMEOUT; 130: the
# session ended first. Either way one line on stderr says what was stopped and why.
trap '' PIPE  # the session may be gone: stopping the command must not die writing about it
cd -- "$DIR" || exit 3
interpreter=$PYTHON release=""
if [ "$VENV" = yes ]; then
  export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH"
  interpreter=.venv/bin/python release=$PWD
fi
timeout -k "$GRACE" "$TIMEOUT" "$interpreter" -c "$WITH_SECRETS" "$COMMAND" "$release" "$SETTINGS" < /dev/null &
running=$!
exec 3<&0  # a job started with & reads /dev/null: hand it our stdin explicitly
cat <&3 > /dev/null 2>&1 &
watch=$!
exec 3<&-
status=0 first=""
wait -n -p first "$running" "$watch" 2> /dev/null || status=$?
if [ "$first" != "$running" ]; then  # stdin closed first
  kill -TERM "$running" 2> /dev/null || true  # timeout passes it to the group, KILL after GRACE
  wait "$running" 2> /dev/null || true
  echo "stopped $LABEL: the SSH session ended (fab interrupted or gone)" >&2 || true
  exit 130
fi
kill "$watch" 2> /dev/null || true
if [ "$TIMEOUT" -gt 0 ] && { [ "$status" = 124 ] || { [ "$status" = 137 ] && [ "$SECONDS" -ge "$TIMEOUT" ]; }; }; then
  echo "stopped $LABEL: it ran longer than $TIMEOUT s (TERM, then KILL after $GRACE s)" >&2
  exit 124
fi
exit "$status"
