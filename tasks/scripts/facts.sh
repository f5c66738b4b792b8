# What a deploy needs to know about a host, refusing one that was not set up.
# env: RELEASES VENVS SHARED INCOMING UNIT CONF PYTHON CURRENT PIDFILE SETUP MARKER HOST_TAGS
# FACTS_PY (scripts/facts.py: one start of the host's Python answers all it is asked)
# Out: `python -VV` and the platform, then the Python version, then key=value lines: tags,
# current, revision, running (yes/no), venv (one per complete venv).
missing=()
for dir in "$RELEASES" "$VENVS" "$SHARED" "$INCOMING"; do [ -d "$dir" ] || missing+=("$dir"); done
[ -f "$UNIT" ] || missing+=("$UNIT")
[ -f "$CONF" ] || missing+=("$CONF")
if [ ${#missing[@]} -gt 0 ]; then
  echo "not set up: missing ${missing[*]}: run \`$SETUP\` first" >&2; exit 3
fi
[ -w "$INCOMING" ] || { echo "$INCOMING is not writable by $(id -un)" >&2; exit 3; }
sudo -n true 2>/dev/null || { echo "sudo -n fails for $(id -un): passwordless sudo is required" >&2; exit 3; }
if ! found=$("$PYTHON" -c "$FACTS_PY" "$HOST_TAGS"); then
  echo "$PYTHON lacks venv: run \`$SETUP\`" >&2; exit 3
fi
printf '%s\n' "$found"
kv current "$(current_release)"
kv revision "$(sed -n 's/^revision=//p' "$CURRENT/REVISION" 2>/dev/null || true)"
if alive "$(cat "$PIDFILE" 2>/dev/null || true)"; then kv running yes; else kv running no; fi
shopt -s nullglob
for done in "$VENVS"/*/"$MARKER"; do venv=${done%/*}; echo "venv=${venv##*/}"; done
