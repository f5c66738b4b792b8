# The releases and venvs on a host, what `current` points to, and revisions.log's tail.
# env: CURRENT RELEASES VENVS LOG
# Out: current=NAME, release=NAME VENV (complete releases), partial=NAME (no REVISION),
# venv=DIGEST lines; then a `--log--` line and the last 500 lines of revisions.log.
kv current "$(current_release)"
shopt -s nullglob
for dir in "$RELEASES"/*/; do
  dir=${dir%/}
  venv=$(readlink -- "$dir/.venv" 2>/dev/null || true)
  venv=${venv##*/}
  if [ -f "$dir/REVISION" ]; then echo "release=${dir##*/} $venv"; else echo "partial=${dir##*/}"; fi
done
for dir in "$VENVS"/*/; do dir=${dir%/}; echo "venv=${dir##*/}"; done
echo "--log--"
tail -n 500 -- "$LOG" 2>/dev/null || true
