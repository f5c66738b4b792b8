# Unpack a shipped release and install it, in one session (needs as_app).
# env: APP_USER; ARCHIVES ("SHA256 PATH" lines, in INCOMING); INCOMING CURRENT RELEASES;
# RELEASE (the directory to make); INSTALL_PROGRAM (install.sh with its settings, run as the
# app user once the release is unpacked).
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
    as_app rm -rf -- "$dir"
  fi
done
as_app mkdir -- "$RELEASE"
while read -r sum archive; do
  as_app tar -xzf "$archive" -C "$RELEASE" --no-same-owner --no-same-permissions
  rm -f -- "$archive"
done <<< "$ARCHIVES"
as_app ln -sfn ../../shared/.env "$RELEASE/.env"
echo "unpacked releases/${RELEASE##*/}"
as_app bash -c "$INSTALL_PROGRAM"
