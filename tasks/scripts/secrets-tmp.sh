# A private temporary file for the secrets on their way (0600); with DIRECTORY=yes a private
# directory (0700) for the setup files a deploy stages. Out: its path.
umask 077
if [ "${DIRECTORY:-}" = yes ]; then
  mktemp -d "${HOME:-/tmp}/.fabdeploy-stage.XXXXXX"
else
  mktemp "${HOME:-/tmp}/.fabdeploy-env.XXXXXX"
fi
