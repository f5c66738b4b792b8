# The smoke check (test.smoke): serve a release with gunicorn on a free port of 127.0.0.1
# (1 worker, as the app user, the production gunicorn.conf.py) until it is healthy.
#
# gunicorn runs as the app user with a private temporary directory of the app user's for its
# pidfile (never the service's /run/<app>); its output goes to a file the deploy user opened
# in its own INCOMING, so the deploy user reads only its own file (docs/security.md#ownership).
#
# In: APP_USER RELEASE (its directory) CONF (gunicorn.conf.py) WSGI_APP INCOMING (where the
#     app's output is kept meanwhile) HEALTH_PATH TIMEOUT (seconds to be healthy)
#     PROBE_PATHS (CANARY_URLS' paths, one a line: each must answer without a 5xx once healthy)
#     LIMIT (seconds gunicorn may run at all) PROBE_PYTHON ANSWER_GRACE, and IMPORT_CODE (the
#     text of scripts/import_target.py, run when the release does not become healthy).
# Out: "smoke: ... answered 200 on a side port", exit 0. Exit 1: the import failed (its
#      traceback), the release did not become healthy or a probed path answered a 5xx or
#      nothing (the app's output), on stderr;
#      exit 3: the release has no venv.
cd -- "$RELEASE" || exit 1
py="$RELEASE/.venv/bin/python"
[ -x "$py" ] || { echo "smoke: $py is missing (install step not done?)" >&2; exit 3; }
port=$("$PROBE_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log="$INCOMING/smoke-${RELEASE##*/}.log"
: > "$log"
private=$(as_app mktemp -d)  # the app user's own, 0700: the smoke gunicorn's pidfile
as=()  # a background job must be the process itself (not a function) so $! can stop it
[ "$(id -un)" = "$APP_USER" ] || as=(sudo -n -u "$APP_USER" --)
"${as[@]}" env FABDEPLOY_CHDIR="$RELEASE" timeout -k 5 "$LIMIT" "$py" -m gunicorn   --config "$CONF" --bind "127.0.0.1:$port" --workers 1 --pid "$private/gunicorn.pid"   --graceful-timeout 5 --error-logfile - --access-logfile /dev/null "$WSGI_APP"   </dev/null >>"$log" 2>&1 &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true; as_app rm -rf -- "$private"' EXIT
url="http://127.0.0.1:$port$HEALTH_PATH"
if code=$(wait_healthy "$url" "$TIMEOUT" "$pid"); then ok=yes; else ok=no; fi
probed=""
if [ $ok = yes ]; then
  urls=""
  while IFS= read -r path; do [ -z "$path" ] || urls+="http://127.0.0.1:$port$path"$'\n'; done <<< "${PROBE_PATHS:-}"
  probed=$(probe_urls "$urls") || ok=probe
fi
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
trap - EXIT
as_app rm -rf -- "$private"
if [ $ok = yes ]; then
  echo "smoke: $WSGI_APP imported; $url answered $code on a side port${probed:+ (and CANARY_URLS did: ${probed//$'\n'/; })}"
  rm -f -- "$log"
elif [ $ok = probe ]; then
  echo "smoke: healthy on a side port, but ${probed##*$'\n'} (CANARY_URLS: a 5xx or no answer fails the release before any switch)" >&2
  echo "--- the app's output ---" >&2
  tail -n 40 -- "$log" >&2 || true
  rm -f -- "$log"
  exit 1
elif ! out=$(as_app "$py" -c "$IMPORT_CODE" "$CONF" "$WSGI_APP" 2>&1); then
  echo "smoke: importing $WSGI_APP with the release's Python failed:" >&2
  printf '%s\n' "$out" | tail -n 30 >&2
  rm -f -- "$log"
  exit 1
else
  echo "smoke: the release did not become healthy on a side port: $url answered $code" >&2
  echo "--- the app's output ---" >&2
  tail -n 40 -- "$log" >&2 || true
  rm -f -- "$log"
  exit 1
fi
