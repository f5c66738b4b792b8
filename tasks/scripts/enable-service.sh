# daemon-reload when the unit changed; enable the web service at boot (disable it where
# the host's roles run no web process).
# env: UNIT_CHANGED SERVICE WEB (yes/no). Out: `changed` or `no change`.
if [ "$UNIT_CHANGED" = yes ]; then sudo -n systemctl daemon-reload >/dev/null 2>&1 || true; fi
enabled=$(systemctl is-enabled -- "$SERVICE" 2>/dev/null || true)
if [ "$WEB" = no ]; then  # the host's roles run no web process: not started at boot
  if [ "$enabled" = enabled ]; then sudo -n systemctl disable -- "$SERVICE" >/dev/null 2>&1; echo changed; else echo "no change"; fi
elif [ "$enabled" = enabled ]; then
  echo "no change"
else
  sudo -n systemctl enable -- "$SERVICE" >/dev/null 2>&1
  echo changed
fi
