# Remove a build's work directory on the host. env: WORK
rm -rf -- "${WORK:?}"
