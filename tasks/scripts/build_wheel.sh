# Build one wheel from a source distribution in a throwaway venv (run by wheels.build_on_host).
#
# In: PYTHON, ARCHIVE (a tar.gz holding sdist/<one sdist> and deps/<wheels of the build
#     requirements>), BUILD_REQUIRES (the build requirements, one a line).
# Out: "work=<dir>" first; on success "wheel=<file name>" last, the wheel in <dir>/out (the
#      caller fetches it, then removes <dir>). Exit 4: the build failed and the host lacks a
#      C compiler or the Python headers ("missing: ..."); exit 3: it failed otherwise.
# Nothing outside <dir> changes; no index is reached (pip --no-index).

work=$(mktemp -d "${TMPDIR:-/tmp}/fabdeploy-build.XXXXXX")
echo "work=$work"
log="$work/build.log"

fail() {  # CODE MESSAGE: print the log's tail and MESSAGE, remove the work dir, exit CODE
  tail -n 20 "$log" >&2 || true
  echo "$2" >&2
  rm -rf -- "$work"
  exit "$1"
}

missing_tools() {  # what a C extension build needs and this host lacks, space-separated
  local found=() include
  command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || found+=("a C compiler (cc or gcc)")
  include=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  [ -f "$include/Python.h" ] || found+=("the Python headers ($include/Python.h)")
  local IFS=,
  echo "${found[*]}"
}

tar -xzf "$ARCHIVE" -C "$work"
rm -f -- "$ARCHIVE"
mapfile -t requires <<< "$BUILD_REQUIRES"
"$PYTHON" -m venv "$work/venv" >"$log" 2>&1 || fail 3 "creating the build venv failed"
"$work/venv/bin/python" -m pip install --disable-pip-version-check --no-input --no-index \
  --find-links "$work/deps" "${requires[@]}" >>"$log" 2>&1 \
  || fail 3 "installing the build requirements (${requires[*]}) failed"
if ! "$work/venv/bin/python" -m pip wheel --disable-pip-version-check --no-input --no-index \
     --no-deps --no-build-isolation -w "$work/out" "$work"/sdist/* >>"$log" 2>&1; then
  lacking=$(missing_tools)
  if [ -n "$lacking" ]; then fail 4 "missing: $lacking"; fi
  fail 3 "building the wheel failed"
fi
shopt -s nullglob
wheels=("$work"/out/*.whl)
[ ${#wheels[@]} -eq 1 ] || fail 3 "expected one wheel, pip made ${#wheels[@]}"
echo "wheel=${wheels[0]##*/}"
