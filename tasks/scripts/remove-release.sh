# Delete releases/NAME, refusing the one `current` points to (run as the deploy user).
# env: CURRENT RELEASES NAME
if [ "$(current_release)" = "$NAME" ]; then echo "refusing to remove the current release" >&2; exit 3; fi
rm -rf -- "${RELEASES:?}/$NAME"
