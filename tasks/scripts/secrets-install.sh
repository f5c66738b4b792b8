# Install the uploaded secrets file TMP (the SSH user's, 0600) as DEST (/etc/<app>/env, root's,
# readable by the app user's group only: root : GROUP 0640), checked, atomically: its content
# goes through stdin into a temp file beside DEST made by `install`, then renamed over DEST.
# env: TMP DEST GROUP DIGEST (the sha256 it must have).
trap 'rm -f "$TMP"' EXIT
# shellcheck disable=SC2024  # on purpose: the SSH user reads its own file, root only writes
sudo -n install -m 640 -o root -g "$GROUP" -- /dev/stdin "$DEST.fabdeploy-new" < "$TMP"
sudo -n mv -fT -- "$DEST.fabdeploy-new" "$DEST"
[ "$(sudo -n sha256sum -- "$DEST" | cut -d' ' -f1)" = "$DIGEST" ]
