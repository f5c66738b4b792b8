# Install python3 and venv support with apt-get, only when PYTHON lacks them.
# env: PYTHON. Out: `changed` or `no change`, then `Python X.Y.Z`.
if "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "no change"
else
  if ! command -v apt-get >/dev/null; then
    echo "$PYTHON cannot create virtualenvs and apt-get is missing: install python3-venv" >&2
    exit 3
  fi
  export DEBIAN_FRONTEND=noninteractive
  sudo -n apt-get update -q >/dev/null
  sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv >/dev/null
  "$PYTHON" -c 'import venv, ensurepip'
  echo changed
fi
"$PYTHON" -c 'import sys; print("Python %d.%d.%d" % sys.version_info[:3])'
