# Install the uploaded secrets file TMP as DEST (0600, the app user's), checked, atomically.
# env: TMP DEST APP_USER GROUP DIGEST (the sha256 it must have).
trap 'rm -f "$TMP"' EXIT
sudo -n install -m 0600 -o "$APP_USER" -g "$GROUP" "$TMP" "$DEST.new"
sudo -n mv -fT "$DEST.new" "$DEST"
[ "$(sudo -n sha256sum "$DEST" | cut -d' ' -f1)" = "$DIGEST" ]
