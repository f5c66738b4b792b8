# The sha256 and owner:group:mode of the secrets file on the host (root's: read by sudo), when
# there is one.
# env: DEST. Out: `SHA256 USER:GROUP:MODE`, or nothing.
if sudo -n test -f "$DEST"; then
  echo "$(sudo -n sha256sum -- "$DEST" | cut -d" " -f1) $(sudo -n stat -c %U:%G:%a -- "$DEST")"
fi
