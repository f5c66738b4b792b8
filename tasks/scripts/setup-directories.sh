# shellcheck shell=bash
# The ownership model on a host (docs/security.md#ownership): the deploy root and /etc/<app>,
# who owns each path and its mode. Runs as the SSH user (the deploy user, D); root only by
# `sudo -n` on paths in directories no app user can write, each command a fixed line of the
# sudoers rule (tasks/host/sudoers.py: `chown D:` and `chown APP_USER:` give the user's own
# group, so no group name varies but GROUP's).
#
#   ETC          root : GROUP 0750     ROOT             D : GROUP 0750
#   RELEASES VENVS SHARED   D : D 0755 INCOMING SWITCH  D : D 0700
#   CURRENT CURRENT_TMP LOCK REVLOG    D's (when they exist)
#   LOGS and DATA (the linked paths)   APP_USER : GROUP (LOGS 0750; DATA's modes: linked_paths.sh)
#
# A path that is missing is made; one that exists with another owner is handed over (chown
# -R -h: links are never followed), which only a layout of an older fabdeploy (or another
# APP_USER) needs: that and an older fabdeploy's files (LEGACY_*: the secrets move to
# ENV_FILE, gunicorn.conf.py and the pids directory go) are a migration, which MODE=survey
# only reports, so that setup stops the app's services first.
#
# In: MODE (survey | apply) APP_USER GROUP (its group) ETC ENV_FILE ROOT RELEASES VENVS SHARED
#     INCOMING SWITCH CURRENT CURRENT_TMP LOCK REVLOG LOGS DATA (absolute, one a line)
#     LEGACY_ENV LEGACY_CONF LEGACY_PIDS KEEP_ENV (yes: no SECRETS_FILE replaces the secrets:
#     move LEGACY_ENV's content to ENV_FILE) UNITS (the app's units, one a line).
# Out (survey): `migrate=<what>` per path handed over or moved, `active=<unit>` per running
#     unit of UNITS. Out (apply): `changed` and a line per change, or `no change`.
#     Exit 4: ETC holds files that are not fabdeploy's (APP_NAME names a system directory).
me=$(id -un) mine=$(id -gn)
done_=()  # what apply changed
state() { stat -c %U:%G:%a -- "$1" 2>/dev/null || true; }  # of the entry itself ("" missing)
exists() { [ -e "$1" ] || [ -L "$1" ]; }
all_mine() {  # PATH: PATH and everything under it are D's (false when some cannot be read)
  local odd
  odd=$(find "$1" \( ! -user "$me" -o ! -group "$mine" \) -print -quit 2>/dev/null) || return 1
  [ -z "$odd" ]
}
act() {  # WHAT CMD...: a change of D's own or a path made anew (apply only)
  [ "$MODE" = apply ] || return 0
  "${@:2}"
  done_+=("$1")
}
hand() {  # PATH OWNER CMD...: PATH exists with another owner: a migration
  if [ "$MODE" = survey ]; then echo "migrate=$1: $(state "$1" | cut -d: -f1,2) -> $2"; return; fi
  "${@:3}"
  done_+=("$1: -> $2")
}

# /etc/<app>: root's, readable by the app's group only; never a directory of something else
found=$(state "$ETC")
if [ -z "$found" ]; then
  act "$ETC" sudo -n install -d -o root -g "$GROUP" -m 0750 -- "$ETC"
elif [ "$found" != "root:$GROUP:750" ]; then
  while IFS= read -r name; do
    case $name in
      ''|env|settings|gunicorn.conf.py|*.fabdeploy-new|*.fabdeploy-old) ;;
      *) echo "$ETC exists and holds $name, which is not fabdeploy's: the app's settings go to" \
           "/etc/<APP_NAME>, so choose an APP_NAME no other software uses" >&2; exit 4 ;;
    esac
  done <<< "$(sudo -n ls -A -- "$ETC")"
  if [ "${found%:*}" != "root:$GROUP" ]; then
    hand "$ETC" "root:$GROUP" sudo -n chown -h "root:$GROUP" -- "$ETC"
  fi
  act "$ETC 0750" sudo -n chmod 0750 -- "$ETC"
fi

# an older fabdeploy's secrets (shared/.env) move to ENV_FILE as they are, unless SECRETS_FILE
# replaces them: read as the user whose directory shared/ was (the old app user, never root
# through it), while the old layout still lets that user reach it
if [ "$MODE" = apply ] && exists "$LEGACY_ENV" && [ "$KEEP_ENV" = yes ] \
   && ! sudo -n stat -c %U:%G:%a:%Y -- "$ENV_FILE" >/dev/null 2>&1; then
  from=$(stat -c %U -- "${LEGACY_ENV%/*}")
  if [ "$from" = "$me" ]; then reader=(); else reader=(sudo -n -u "$from" --); fi
  "${reader[@]}" cat -- "$LEGACY_ENV" \
    | sudo -n install -m 640 -o root -g "$GROUP" -- /dev/stdin "$ENV_FILE.fabdeploy-new"
  sudo -n mv -fT -- "$ENV_FILE.fabdeploy-new" "$ENV_FILE"
  done_+=("$LEGACY_ENV: moved to $ENV_FILE")
fi

# the deploy root: D's, the app's group may enter (others may not)
found=$(state "$ROOT")
if [ -z "$found" ]; then
  act "$ROOT" sudo -n install -d -o "$me" -g "$GROUP" -m 0750 -- "$ROOT"
elif [ "${found%:*}" != "$me:$GROUP" ]; then
  hand "$ROOT" "$me:$GROUP" sudo -n chown -h "$me:$GROUP" -- "$ROOT"
fi
if [ -n "$found" ] && [ "${found##*:}" != 750 ]; then act "$ROOT 0750" chmod 0750 -- "$ROOT"; fi

# the code side: D's
for spec in "$RELEASES 755 deep" "$VENVS 755 deep" "$SHARED 755 flat" "$INCOMING 700 deep" \
    "$SWITCH 700 deep"; do
  read -r dir want how <<< "$spec"
  found=$(state "$dir")
  if [ -z "$found" ]; then act "$dir" mkdir -m "$want" -- "$dir"; continue; fi
  if [ "$how" = flat ] && [ "${found%:*}" != "$me:$mine" ]; then
    hand "$dir" "$me:$mine" sudo -n chown -h "$me:" -- "$dir"
  elif [ "$how" = deep ] && ! all_mine "$dir"; then
    hand "$dir" "$me:$mine" sudo -n chown -R -h "$me:" -- "$dir"
  fi
  if [ "${found##*:}" != "$want" ]; then act "$dir 0$want" chmod "$want" -- "$dir"; fi
done
for path in "$CURRENT" "$CURRENT_TMP" "$LOCK" "$REVLOG"; do
  if exists "$path" && ! all_mine "$path"; then
    hand "$path" "$me:$mine" sudo -n chown -R -h "$me:" -- "$path"
  fi
done

# the app's side: its logs and its data (the leaves; the directories above a nested one are D's)
found=$(state "$LOGS")
if [ -z "$found" ]; then
  act "$LOGS" sudo -n install -d -o "$APP_USER" -g "$GROUP" -m 0750 -- "$LOGS"
else
  if [ "${found%:*}" != "$APP_USER:$GROUP" ]; then
    hand "$LOGS" "$APP_USER:$GROUP" sudo -n chown -R -h "$APP_USER:" -- "$LOGS"
  fi
  if [ "${found##*:}" != 750 ]; then act "$LOGS 0750" as_app chmod 0750 -- "$LOGS"; fi
fi
while IFS= read -r path; do
  [ -n "$path" ] || continue
  above=${path%/*}
  while [ "$above" != "$SHARED" ] && [ "${#above}" -gt "${#SHARED}" ]; do
    found=$(state "$above")
    if [ -n "$found" ] && [ "${found%:*}" != "$me:$mine" ]; then
      hand "$above" "$me:$mine" sudo -n chown -h "$me:" -- "$above"
    fi
    if [ -n "$found" ] && [ "${found##*:}" != 755 ]; then  # the app user passes through it
      act "$above 0755" chmod 0755 -- "$above"
    fi
    above=${above%/*}
  done
  found=$(state "$path")
  if [ -n "$found" ] && [ "${found%:*}" != "$APP_USER:$GROUP" ]; then
    hand "$path" "$APP_USER:$GROUP" sudo -n chown -R -h "$APP_USER:" -- "$path"
  fi
done <<< "${DATA:-}"

# an older fabdeploy's files in shared/ (D's directory by now)
if exists "$LEGACY_ENV"; then
  if [ "$MODE" = survey ]; then echo "migrate=$LEGACY_ENV: the secrets move to $ENV_FILE"; fi
  act "$LEGACY_ENV: removed" rm -f -- "$LEGACY_ENV"
fi
if exists "$LEGACY_CONF"; then
  if [ "$MODE" = survey ]; then echo "migrate=$LEGACY_CONF: rendered to $ETC instead"; fi
  act "$LEGACY_CONF: removed" rm -f -- "$LEGACY_CONF"
fi
# the old pids directory and the bytecode gunicorn compiled of the old gunicorn.conf.py beside
# it: handed to D first, then removed by D (root removes nothing in a directory another user
# could write)
cache="${LEGACY_CONF%/*}/__pycache__"
drop_cache() {
  find "$cache" -maxdepth 1 -name 'gunicorn.conf.*.pyc' -delete
  rmdir --ignore-fail-on-non-empty -- "$cache"
}
if exists "$cache"; then
  if [ "$MODE" = survey ]; then echo "migrate=$cache: the old gunicorn.conf.py's bytecode goes"; fi
  all_mine "$cache" || act "$cache: -> $me:$mine" sudo -n chown -R -h "$me:" -- "$cache"
  act "$cache: the old gunicorn.conf.py's bytecode removed" drop_cache
fi
if exists "$LEGACY_PIDS"; then
  if [ "$MODE" = survey ]; then echo "migrate=$LEGACY_PIDS: the pidfile moves to /run"; fi
  all_mine "$LEGACY_PIDS" || act "$LEGACY_PIDS: -> $me:$mine" sudo -n chown -R -h "$me:" -- "$LEGACY_PIDS"
  act "$LEGACY_PIDS: removed" rm -rf -- "$LEGACY_PIDS"
fi
# each release's .env: a link to ENV_FILE (D's links in D's releases)
for link in "$RELEASES"/*/.env; do
  if [ -L "$link" ] && [ "$(readlink -- "$link")" != "$ENV_FILE" ]; then
    act "${link%/.env}: .env -> $ENV_FILE" ln -sfn -- "$ENV_FILE" "$link"
  fi
done

if [ "$MODE" = survey ]; then
  while IFS= read -r unit; do
    if [ -n "$unit" ] && systemctl is-active --quiet -- "$unit" 2>/dev/null; then kv active "$unit"; fi
  done <<< "${UNITS:-}"
elif [ ${#done_[@]} -gt 0 ]; then
  echo changed
  printf '%s\n' "${done_[@]}"
else
  echo "no change"
fi
