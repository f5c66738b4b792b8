# Delete releases/NAME, refusing the one `current` points to (run as the app user).
# env: CURRENT RELEASES NAME
serving=$(readlink "$CURRENT" 2>/dev/null || true)
if [ "${serving##*/}" = "$NAME" ]; then echo "refusing to remove the current release" >&2; exit 3; fi
rm -rf -- "${RELEASES:?}/$NAME"
