# Give a release its virtualenv, compile its Python files, then write its REVISION (run by
# install.install as the deploy user, who owns releases/ and venvs/: the app user, who only
# reads them, could not write a __pycache__ there itself).
#
# In: VENVS DIGEST MARKER PREBUILT PREBUILT_BIN PINNED PYTHON RELEASE REQUIREMENTS REVISION_TEXT
#     INDEX_URL (HOST_PACKAGE_INDEX: pip on the host installs from it; empty: the shipped
#     wheelhouse) REQUIREMENTS_TEXT (with INDEX_URL: what pip installs when not the release's
#     REQUIREMENTS file as it is: a lock's export, the server packages fabdeploy adds). Prints "venv <digest> reused" or "venv <digest> built <how> (<n> packages)".
#
# venvs/<digest> is reused when complete (it has $MARKER). Otherwise it is made from the
# prebuilt packages without pip (site-packages copied, scripts given this venv's Python in
# their shebang, as pip would have written them), or with pip from the wheelhouse or index.

venv="$VENVS/$DIGEST"

site_packages() {  # the venv's site-packages directory
  "$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
}

install_scripts() {  # FROM: copy scripts into the venv's bin/, #!python -> its Python
  local script name first
  shopt -s nullglob
  for script in "$1"/*; do
    name=${script##*/}
    if [ ! -f "$script" ] || [ -e "$venv/bin/$name" ]; then continue; fi  # not the venv's python
    IFS= read -r first < "$script" || true
    if [ "$first" = '#!python' ] || [ "$first" = '#!pythonw' ]; then
      { printf '#!%s\n' "$venv/bin/python"; tail -n +2 -- "$script"; } > "$venv/bin/$name"
    else
      cp -p -- "$script" "$venv/bin/$name"
    fi
    chmod 755 "$venv/bin/$name"
  done
  shopt -u nullglob
}

from_prebuilt() {  # packages installed on the deploying machine: no pip on the host
  "$PYTHON" -m venv --without-pip "$venv"
  cp -a -- "$RELEASE/$PREBUILT/." "$(site_packages)/"
  if [ -d "$RELEASE/$PREBUILT_BIN" ]; then install_scripts "$RELEASE/$PREBUILT_BIN"; fi
  how="from the prebuilt packages"
}

with_pip() {  # pip from the shipped wheelhouse, or from INDEX_URL
  local log="$venv/pip-install.log" source
  if [ -n "$INDEX_URL" ]; then
    source=(--index-url "$INDEX_URL")
    if [[ $INDEX_URL == http://* ]]; then  # plain HTTP was asked for: pip refuses it otherwise
      local hostport=${INDEX_URL#http://}
      hostport=${hostport%%/*}
      source+=(--trusted-host "${hostport%%:*}")
    fi
  else
    source=(--no-index --find-links "$RELEASE/wheelhouse")
  fi
  local wanted="$RELEASE/$REQUIREMENTS"
  if [ -n "$INDEX_URL" ] && [ -n "$REQUIREMENTS_TEXT" ]; then  # beside the file it may -r
    wanted="$RELEASE/$PINNED"
    printf '%s' "$REQUIREMENTS_TEXT" > "$wanted"
  fi
  # URL, path and VCS requirements pinned to the wheels built of them (the host cannot fetch them)
  if [ -z "$INDEX_URL" ] && [ -f "$RELEASE/wheelhouse/$PINNED" ]; then
    wanted="$RELEASE/wheelhouse/$PINNED"
  fi
  "$PYTHON" -m venv "$venv"
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input \
       "${source[@]}" -r "$wanted" >"$log" 2>&1; then
    tail -n 25 "$log" >&2
    echo "pip install failed; the unfinished venv $DIGEST will be rebuilt next time" >&2
    exit 3
  fi
  if [ "$wanted" = "$RELEASE/$PINNED" ]; then mv -f -- "$wanted" "$venv/requirements.txt"; fi  # what it holds
  how="with pip"
}

# 0600: the app user (who may read venvs/) cannot open it, so cannot hold it to stall installs
lockfile="$VENVS/.$DIGEST.lock"
(umask 077 && exec 9>>"$lockfile")
[ -O "$lockfile" ] && [ ! -L "$lockfile" ] && chmod 600 -- "$lockfile"
exec 9>>"$lockfile"
flock -w 900 9 || { echo "venv $DIGEST is locked by another install" >&2; exit 3; }
if [ -f "$venv/$MARKER" ]; then
  echo "venv $DIGEST reused"
else
  if [ -e "$venv" ]; then echo "removing unfinished venv $DIGEST"; rm -rf -- "$venv"; fi
  if [ -d "$RELEASE/$PREBUILT" ]; then from_prebuilt; else with_pip; fi
  # bytecode of the copied packages too: the app user cannot write it into the venv
  "$venv/bin/python" -m compileall -q "$(site_packages)" >/dev/null 2>&1 || true
  "$venv/bin/python" -c 'import gunicorn' 2>/dev/null \
    || { echo "gunicorn is not installed by $REQUIREMENTS: add it" >&2; exit 3; }
  touch "$venv/$MARKER"
  echo "venv $DIGEST built $how ($(find "$(site_packages)" -maxdepth 1 -name '*.dist-info' | wc -l) packages)"
fi
ln -sfn "../../venvs/$DIGEST" "$RELEASE/.venv"
rm -rf -- "${RELEASE:?}/wheelhouse" "$RELEASE/${PREBUILT:?}" "$RELEASE/${PREBUILT_BIN:?}"
# The release's own bytecode, for the Python that runs it (links such as .venv are not followed)
"$venv/bin/python" -m compileall -q "$RELEASE" >/dev/null 2>&1 \
  || echo "compileall: some of the release's .py files do not compile (left as they are)"
printf '%s' "$REVISION_TEXT" > "$RELEASE/REVISION.tmp"
mv -f "$RELEASE/REVISION.tmp" "$RELEASE/REVISION"
