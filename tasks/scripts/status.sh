# One host's status in one round trip (monitor.status and monitor.health).
#
# In: UNIT WEB PROCESS_UNITS ("<name> <unit>" lines) CURRENT PIDFILE APP_USER (who reads
#     it) PY (the host's Python) PROBE_HOST PORT HEALTH_PATH HEALTH_HOST (the probe's Host header; empty: host:port) SAMPLE (seconds of CPU sampling; 0: none) TIMEOUT (of the
#     health probe), SETTINGS (the app's settings file, read by sudo -n; empty: not read),
#     and STATUS_PY (the text of scripts/status.py, run by PY).
# Out: key=value lines: state, web, process_<name> (each companion unit's state), release and
#      release_missing=yes, revision_file (REVISION in base64), pid, pid_alive (yes/no, when the
#      pidfile names a pid), settings_file (the settings file in base64, when read); then status.py's workers, rss_kb, uptime, cpu, health_status or
#      health_error, health_ms; probe_error when PY cannot run it.
state=$(systemctl is-active -- "$UNIT" 2>&1 | head -n 1) || true  # (no root needed)
kv state "$state"
kv web "${WEB:-yes}"
while IFS=' ' read -r process service; do
  [ -n "$service" ] || continue
  kv "process_$process" "$(systemctl is-active "$service" 2>/dev/null | head -n 1 || true)"
done <<< "${PROCESS_UNITS:-}"
if [ -L "$CURRENT" ]; then
  kv release "$(current_release)"
  [ -d "$CURRENT/" ] || kv release_missing yes
fi
if [ -r "$CURRENT/REVISION" ]; then
  kv revision_file "$(base64 < "$CURRENT/REVISION" | tr -d '\n')"
fi
if [ -n "${SETTINGS:-}" ]; then  # root's file in /etc/<app>: read as setup wrote it, by sudo
  if encoded=$(set -o pipefail; sudo -n cat -- "$SETTINGS" 2>/dev/null | base64 -w0); then
    kv settings_file "$encoded"
  fi
fi
pid=$(app_pid "$PIDFILE")
kv pid "$pid"
if [ -n "$pid" ]; then
  if alive "$pid"; then kv pid_alive yes; else kv pid_alive no; pid=""; fi
fi
if ! command -v "$PY" >/dev/null 2>&1; then
  kv probe_error "$PY not found on the host"
  exit 0
fi
"$PY" -c "$STATUS_PY" "$pid" "$PROBE_HOST" "$PORT" "$HEALTH_PATH" "$SAMPLE" "$TIMEOUT" "$HEALTH_HOST" \
  || kv probe_error "probe failed"
