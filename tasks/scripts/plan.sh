# What setup owns on a host, as it is there: read by `fab plan` and by the deploy's lock
# (tasks/host/converge.py), changing nothing. Every file is root's, in a root-owned directory
# under /etc: the units (0644) are read as the SSH user, /etc/<app>'s gunicorn.conf.py and
# secrets (root : app group, 0640, in a 0750 directory) by sudo -n with the fixed command lines
# of tasks/host/sudoers.py, never through a path the app user can change
# (docs/security.md#ownership); the pidfile is read as the app user.
# In: UNIT CONF ENV_FILE SETTINGS (the app's settings file, read like CONF: a host whose sudo
# rule predates it answers `-`) APP_USER PIDFILE PROCESS_UNITS (the companion units' files,
# one a line; may be empty).
# Out: `group=<the app user's group>`, `secrets=<sha256> <user>:<group>:<mode>` (empty: no
# secrets file), then per file (UNIT, CONF, SETTINGS, each process unit) `file=<path> <base64 of its
# text>` (`-`: missing), `stale=<what>` for each running process that started before a file
# it reads last changed (`web`, or a process unit's file), and `secret=<name>` per secret
# name in the env file (names only, never values).
declare -A mtimes=()  # path -> its modification time (seconds), for the files that exist
kv group "$(id -gn -- "$APP_USER" 2>/dev/null || true)"
found=$(sudo -n stat -c %U:%G:%a:%Y -- "$ENV_FILE" 2>/dev/null || true)
if [ -n "$found" ]; then
  mtimes[$ENV_FILE]=${found##*:}
  kv secrets "$(sudo -n sha256sum -- "$ENV_FILE" | cut -d' ' -f1) ${found%:*}"
else
  kv secrets ""
fi
mapfile -t units <<< "${PROCESS_UNITS:-}"
for file in "$UNIT" "$CONF" "$SETTINGS" "${units[@]}"; do
  [ -n "$file" ] || continue
  reader=()  # the units as the SSH user; /etc/<app>'s gunicorn.conf.py and settings by sudo -n
  if [ "$file" = "$CONF" ] || [ "$file" = "$SETTINGS" ]; then reader=(sudo -n); fi
  if found=$("${reader[@]}" stat -c %U:%G:%a:%Y -- "$file" 2>/dev/null); then
    mtimes[$file]=${found##*:}
    echo "file=$file $("${reader[@]}" cat -- "$file" | base64 -w0)"
  else
    echo "file=$file -"
  fi
done
mtime() {  # FILE...: the latest modification time (seconds) of those that exist, else 0
  local latest=0 file time
  for file in "$@"; do
    time=${mtimes[$file]:-0}
    [ "$time" -gt "$latest" ] && latest=$time
  done
  echo "$latest"
}
started() {  # PID: when it started (seconds since the epoch, up to 2 s early; empty: not
  # running)
  local ticks boot stat
  alive "$1" || return 0
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  read -r -a fields <<< "$stat"
  ticks=${fields[19]}  # field 22 of /proc/PID/stat: start time, clock ticks after boot
  boot=$(sed -n 's/^btime //p' /proc/stat)
  echo $((boot + ticks / $(getconf CLK_TCK)))
}
since=$(started "$(app_pid "$PIDFILE")")
# A file changed more than 2 s after the process started (the estimates are whole seconds).
if [ -n "$since" ] && [ $((since + 2)) -lt "$(mtime "$ENV_FILE" "$SETTINGS" "$CONF")" ]; then kv stale web; fi
for file in "${units[@]}"; do
  if [ -z "$file" ] || [ -z "${mtimes[$file]:-}" ]; then continue; fi
  since=$(started "$(systemctl show -p MainPID --value -- "${file##*/}" 2>/dev/null || true)")
  if [ -n "$since" ] && [ $((since + 2)) -lt "$(mtime "$ENV_FILE" "$SETTINGS" "$file")" ]; then kv stale "$file"; fi
done
if [ -n "${mtimes[$ENV_FILE]:-}" ]; then  # the names only: what is left of the first = on each line
  sudo -n cut -s -d= -f1 -- "$ENV_FILE" 2>/dev/null | grep -E '^[A-Za-z_][A-Za-z0-9_]*$' \
    | sed 's/^/secret=/' || true
fi
