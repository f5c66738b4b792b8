# daemon-reload when a unit changed; enable the companion processes' units at boot.
# env: CHANGED (yes/no) UNITS (one a line). Out: how many units were enabled.
if [ "$CHANGED" = yes ]; then sudo -n systemctl daemon-reload >/dev/null 2>&1 || true; fi
mapfile -t wanted <<< "$UNITS"
todo=()
for unit in "${wanted[@]}"; do
  [ "$(systemctl is-enabled "$unit" 2>/dev/null)" = enabled ] || todo+=("$unit")
done
for unit in "${todo[@]}"; do sudo -n systemctl enable -- "$unit" >/dev/null 2>&1; done
echo "${#todo[@]}"
