# What a deploy needs to know about a host, refusing one that was not set up.
# env: RELEASES VENVS SHARED INCOMING UNIT CONF (root's, under /etc/<app>: stat'ed by sudo)
# LEGACY_CONF (where an older fabdeploy kept it) PYTHON CURRENT PIDFILE APP_USER (the pidfile
# is read as the app user) SETUP MARKER HOST_TAGS
# FACTS_PY (scripts/facts.py: one start of the host's Python answers all it is asked; its
# answer is cached until a file it depends on changes) FACTS_KEY (names the cache)
# SUDO_PROBES (the root commands to ask `sudo -n -l` about, tasks/host/sudoers.py: one a line,
# its words tab-separated, @APP_GROUP@ standing for the app user's group) SUDO_AS (the app
# user when the SSH user acts as another user for it: asked about too) SUDO_KEY (names the
# cache of "all allowed", kept while sudo's files are unchanged; empty: always ask)
# Out: `python -VV` and the platform, then the Python version, then key=value lines: tags,
# current, revision, running (yes/no), venv (one per complete venv), app_group, sudo_missing
# (the index of each probe sudo refuses), sudo_as=refused.
missing=()
for dir in "$RELEASES" "$VENVS" "$SHARED" "$INCOMING"; do [ -d "$dir" ] || missing+=("$dir"); done
[ -f "$UNIT" ] || missing+=("$UNIT")
if [ ${#missing[@]} -eq 0 ] && listed "${LEGACY_CONF%/*}" "${LEGACY_CONF##*/}"; then
  echo "set up by an older fabdeploy ($LEGACY_CONF): run \`$SETUP\` to move it to the" \
    "ownership model (docs/security.md#ownership)" >&2; exit 3
fi
[ ! -d "$INCOMING" ] || [ -w "$INCOMING" ] || { echo "$INCOMING is not writable by $(id -un)" >&2; exit 3; }
if ! err=$(sudo -n stat -c %U:%G:%a:%Y -- "$CONF" 2>&1 >/dev/null); then
  case $err in sudo:*) ;; *) missing+=("$CONF") ;; esac  # sudo refusing it: said by the probes
fi
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
group=$(id -gn -- "$APP_USER" 2>/dev/null || true)
kv app_group "$group"
sudo_probe() {  # the probes sudo refuses: sudo_missing=<index> lines, sudo_as=refused
  local line words n=0 err
  if [ -n "${SUDO_AS:-}" ] && ! sudo -n -l -u "$SUDO_AS" -- true >/dev/null 2>&1; then
    echo "sudo_as=refused"
  fi
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    IFS=$'\t' read -r -a words <<< "$line"
    words=("${words[@]//@APP_GROUP@/$group}")
    if ! err=$(LC_ALL=C sudo -n -l -- "${words[@]}" 2>&1 >/dev/null); then
      case $err in *"command not found"*) ;; *) echo "sudo_missing=$n" ;; esac  # (ss: optional)
    fi
    n=$((n + 1))
  done <<< "${SUDO_PROBES:-}"
}
# "all allowed" is kept in the SSH user's home while sudo's files (and the users and groups)
# stay as they were: a deploy asks sudo once after the rule changes, not every time.
sudo_cache="${HOME:-/nonexistent}/.cache/fabdeploy/sudo-${SUDO_KEY:-}"
sudo_stamp=$(stat -L -c '%n %i %s %Y %Z' -- /etc/sudoers /etc/sudoers.d /etc/sudoers.d/* \
  /etc/sudo.conf /etc/group /etc/passwd /etc/nsswitch.conf 2>/dev/null | tr '\n' ' ') || true
if [ -z "${SUDO_KEY:-}" ] || [ ! -r "$sudo_cache" ] || [ "$(cat -- "$sudo_cache")" != "$sudo_stamp" ]; then
  refused=$(sudo_probe)
  if [ -n "$refused" ]; then
    printf '%s\n' "$refused"
  elif [ -n "${SUDO_KEY:-}" ]; then
    { mkdir -p -- "${sudo_cache%/*}" && printf '%s' "$sudo_stamp" > "$sudo_cache.$$" \
        && mv -f -- "$sudo_cache.$$" "$sudo_cache"; } 2>/dev/null || rm -f -- "$sudo_cache.$$"
  fi
fi
kv current "$(current_release)"
revision="" content=""  # read by bash itself: no process per fact
if [ -r "$CURRENT/REVISION" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ $line == revision=* ]]; then revision=${line#revision=}; fi
    if [[ $line == content=* ]]; then content=${line#content=}; fi
  done < "$CURRENT/REVISION"
fi
kv revision "$revision"
kv content "$content"
pid=$(app_pid "$PIDFILE")
if alive "$pid"; then kv running yes; else kv running no; fi
shopt -s nullglob
for done in "$VENVS"/*/"$MARKER"; do venv=${done%/*}; echo "venv=${venv##*/}"; done
