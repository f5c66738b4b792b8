# Write TEXT to DEST as root, only when its content, owner or mode differ. DEST's directory is
# root's (/etc/systemd/system, /etc/logrotate.d, /etc/<app>): the text goes through stdin
# (never argv) into a temp file beside DEST, made by `install` (it removes what is there and
# creates the file anew, 0600, never following a link), given OWNER:GROUP and MODE, then
# renamed over DEST (mv -fT).
# env: DEST TEXT OWNER GROUP MODE. Out: `changed` or `no change`.
if sudo -n test -f "$DEST" && printf '%s' "$TEXT" | sudo -n cmp -s - "$DEST" \
   && [ "$(sudo -n stat -c %U:%G:%a "$DEST")" = "$OWNER:$GROUP:$MODE" ]; then
  echo "no change"
else
  [ -d "${DEST%/*}" ] || sudo -n mkdir -p -- "${DEST%/*}"
  printf '%s' "$TEXT" | sudo -n install -m "$MODE" -o "$OWNER" -g "$GROUP" -- /dev/stdin "$DEST.fabdeploy-new"
  sudo -n mv -fT -- "$DEST.fabdeploy-new" "$DEST"
  echo changed
fi
