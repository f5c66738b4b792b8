# A private temporary file for the secrets on their way (0600). Out: its path.
umask 077
mktemp "${HOME:-/tmp}/.fabdeploy-env.XXXXXX"
