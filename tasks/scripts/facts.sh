# What a deploy needs to know about a host, refusing one that was not set up.
# env: RELEASES VENVS SHARED INCOMING UNIT CONF (root's, under /etc/<app>: tested by sudo)
# LEGACY_CONF (where an older fabdeploy kept it) PYTHON CURRENT PIDFILE APP_USER (the pidfile
# is read as the app user) SETUP MARKER HOST_TAGS
# FACTS_PY (scripts/facts.py: one start of the host's Python answers all it is asked; its
# answer is cached until a file it depends on changes) FACTS_KEY (names the cache)
# Out: `python -VV` and the platform, then the Python version, then key=value lines: tags,
# current, revision, running (yes/no), venv (one per complete venv).
missing=()
for dir in "$RELEASES" "$VENVS" "$SHARED" "$INCOMING"; do [ -d "$dir" ] || missing+=("$dir"); done
[ -f "$UNIT" ] || missing+=("$UNIT")
if [ ${#missing[@]} -eq 0 ] && listed "${LEGACY_CONF%/*}" "${LEGACY_CONF##*/}"; then
  echo "set up by an older fabdeploy ($LEGACY_CONF): run \`$SETUP\` to move it to the" \
    "ownership model (docs/security.md#ownership)" >&2; exit 3
fi
[ ! -d "$INCOMING" ] || [ -w "$INCOMING" ] || { echo "$INCOMING is not writable by $(id -un)" >&2; exit 3; }
sudo -n true 2>/dev/null || { echo "sudo -n fails for $(id -un): passwordless sudo is required" >&2; exit 3; }
sudo -n test -f "$CONF" || missing+=("$CONF")
if [ ${#missing[@]} -gt 0 ]; then
  echo "not set up: missing ${missing[*]}: run \`$SETUP\` first" >&2; exit 3
fi
stamp() {  # FILES...: their inode, size and mtime, on one line (fails when one is missing)
  stat -L -c '%i:%s:%Y' -- "$@" 2>/dev/null | tr '\n' ' '
}
# The Python's answer changes only with the files it names (interpreter, venv, ensurepip,
# the C library): cached in the SSH user's home, keyed by FACTS_KEY and those files' stamps.
cache="${HOME:-/nonexistent}/.cache/fabdeploy/python-facts-$FACTS_KEY"
found=""
if [ -r "$cache" ]; then
  { IFS= read -r files; IFS= read -r stamped; } < "$cache" || true
  read -r -a listed <<< "${files:-}"
  if [ ${#listed[@]} -gt 0 ] && now=$(stamp "${listed[@]}") && [ "$now" = "${stamped:-}" ]; then
    found=$(tail -n +3 -- "$cache")
  fi
fi
if [ -z "$found" ]; then
  if ! found=$("$PYTHON" -c "$FACTS_PY" "$HOST_TAGS"); then
    echo "$PYTHON lacks venv: run \`$SETUP\`" >&2; exit 3
  fi
  files=$(sed -n 's/^files=//p' <<< "$found")
  found=$(grep -v '^files=' <<< "$found")
  read -r -a listed <<< "$files"
  if [ ${#listed[@]} -gt 0 ] && now=$(stamp "${listed[@]}"); then
    { mkdir -p -- "${cache%/*}" && printf '%s\n%s\n%s\n' "$files" "$now" "$found" > "$cache.$$" \
        && mv -f -- "$cache.$$" "$cache"; } 2>/dev/null || rm -f -- "$cache.$$"
  fi
fi
printf '%s\n' "$found"
kv current "$(current_release)"
revision=""  # read by bash itself: no process per fact
if [ -r "$CURRENT/REVISION" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ $line == revision=* ]]; then revision=${line#revision=}; fi
  done < "$CURRENT/REVISION"
fi
kv revision "$revision"
pid=$(app_pid "$PIDFILE")
if alive "$pid"; then kv running yes; else kv running no; fi
shopt -s nullglob
for done in "$VENVS"/*/"$MARKER"; do venv=${done%/*}; echo "venv=${venv##*/}"; done
