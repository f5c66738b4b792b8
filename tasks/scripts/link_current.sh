# shellcheck shell=bash
# Point `current` at a release on a host that runs no web process (its companion processes
# follow when they are restarted), as the deploy user, whose link it is. In: ROOT CURRENT
# TMP_LINK NEW_TARGET. Out: "current -> <release> (...)"; exit 3: no such release.
[ -d "$ROOT/$NEW_TARGET" ] || { echo "release ${NEW_TARGET##*/} does not exist" >&2; exit 3; }
ln -sfn -- "$NEW_TARGET" "$TMP_LINK"
mv -T -- "$TMP_LINK" "$CURRENT"
echo "current -> ${NEW_TARGET##*/} (no web process on this host)"
