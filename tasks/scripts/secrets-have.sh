# The sha256 and owner:group:mode of the secrets file on the host (root's, in /etc/<app>: read
# by sudo -n), when there is one.
# env: DEST. Out: `SHA256 USER:GROUP:MODE`, or nothing.
if found=$(sudo -n stat -c %U:%G:%a:%Y -- "$DEST" 2>/dev/null); then
  echo "$(sudo -n sha256sum -- "$DEST" | cut -d" " -f1) ${found%:*}"
fi
