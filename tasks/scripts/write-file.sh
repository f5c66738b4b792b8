# Write TEXT to DEST as root, only when its content, owner or mode differ. DEST's directory is
# root's (/etc/systemd/system, /etc/logrotate.d, /etc/<app>): the text goes through stdin
# (never argv) into a temp file beside DEST, made by `install` (it removes what is there and
# creates the file anew, 0600, never following a link), given OWNER:GROUP and MODE, then
# renamed over DEST (mv -fT). Every root command has fixed arguments (tasks/host/sudoers.py).
# env: DEST TEXT OWNER GROUP MODE PRIVATE (yes: DEST is in /etc/<app>, which the SSH user may
# not read: read by sudo -n; no: read as the SSH user). Out: `changed` or `no change`.
reader=()
[ "$PRIVATE" = yes ] && reader=(sudo -n)
if found=$("${reader[@]}" stat -c %U:%G:%a:%Y -- "$DEST" 2>/dev/null) \
   && [ "${found%:*}" = "$OWNER:$GROUP:$MODE" ] \
   && "${reader[@]}" cat -- "$DEST" | cmp -s - <(printf '%s' "$TEXT"); then
  echo "no change"
else
  [ -d "${DEST%/*}" ] || sudo -n mkdir -p -- "${DEST%/*}"
  printf '%s' "$TEXT" | sudo -n install -m "$MODE" -o "$OWNER" -g "$GROUP" -- /dev/stdin "$DEST.fabdeploy-new"
  sudo -n mv -fT -- "$DEST.fabdeploy-new" "$DEST"
  echo changed
fi
