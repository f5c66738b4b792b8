# Unpack a shipped release and install it, in one session, as the deploy user: releases/,
# venvs/ and .incoming are its own (the app user only reads them).
# env: ARCHIVES ("SHA256 PATH" lines, in INCOMING); INCOMING CURRENT RELEASES; RELEASE (the
# directory to make); ENV_FILE (what the release's .env links to: /etc/<app>/env);
# INSTALL_PROGRAM (install.sh with its settings, run once the release is unpacked).
# Out: what it removed, `unpacked releases/NAME`, then install.sh's lines.
while read -r sum archive; do
  echo "$sum  $archive" | sha256sum --check --quiet --strict \
    || { echo "archive checksum mismatch after upload: $archive" >&2; exit 3; }
done <<< "$ARCHIVES"
shopt -s nullglob dotglob
left=()
for path in "$INCOMING"/*; do
  grep -qxF -- "$path" <<< "$(cut -d' ' -f2- <<< "$ARCHIVES")" || left+=("$path")
done
if [ ${#left[@]} -gt 0 ]; then
  echo "removing ${#left[@]} leftover(s) of an interrupted deploy from $INCOMING"
  rm -rf -- "${left[@]}"
fi
shopt -u dotglob
serving=$(current_release)
for dir in "$RELEASES"/*/; do
  dir=${dir%/}
  if [ ! -e "$dir/REVISION" ] && [ "$serving" != "${dir##*/}" ]; then
    echo "removing half-made release ${dir##*/}"
    rm -rf -- "$dir"
  fi
done
umask 022  # the app user reads the release through its group's or others' bits, never writes
mkdir -- "$RELEASE"
while read -r sum archive; do
  tar -xzf "$archive" -C "$RELEASE" --no-same-owner --no-same-permissions
  rm -f -- "$archive"
done <<< "$ARCHIVES"
ln -sfn -- "$ENV_FILE" "$RELEASE/.env"
echo "unpacked releases/${RELEASE##*/}"
bash -c "$INSTALL_PROGRAM"
