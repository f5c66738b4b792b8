# Write TEXT to DEST as root, only when its content, owner or mode differ.
# env: DEST TEXT OWNER GROUP MODE. Out: `changed` or `no change`.
if sudo -n test -f "$DEST" && printf '%s' "$TEXT" | sudo -n cmp -s - "$DEST"    && [ "$(sudo -n stat -c %U:%G:%a "$DEST")" = "$OWNER:$GROUP:$MODE" ]; then
  echo "no change"
else
  sudo -n mkdir -p "$(dirname "$DEST")"
  printf '%s' "$TEXT" | sudo -n tee "$DEST.fabdeploy-new" >/dev/null
  sudo -n chown "$OWNER:$GROUP" "$DEST.fabdeploy-new"
  sudo -n chmod "$MODE" "$DEST.fabdeploy-new"
  sudo -n mv -fT "$DEST.fabdeploy-new" "$DEST"
  echo changed
fi
