# shellcheck shell=bash
# The app's data that outlives a release: LINKED_DIRS and LINKED_FILES, kept in shared/.
#
# In: APP_USER SHARED DIRS FILES (one path a line, relative to the app's directory), and
# RELEASE: empty (fab setup) to only make the shared paths, or a release to link them into.
# Runs as the deploy user, whose shared/ and releases are. Each shared path (the leaf) is the
# app user's, not readable by other users (directories 0750, files 0640): made by root with
# `install` when missing (the directories above a nested one are the deploy user's), never
# removed, replaced or handed to another owner here (`fab setup` does that for a layout of an
# older fabdeploy); its mode is set as the app user. A release that ships one of the paths
# itself is refused, naming it (nothing of shared/ is touched).
# Out: "made shared/<path> ..." or "no change"; exit 4: refused.
made=()
group=$(id -gn -- "$APP_USER")
refused() {  # PATH: root could not make shared/PATH (sudo's setup rights: docs/security.md#sudo)
  echo "shared/$1 is missing and root could not make it: run \`fab setup\` (with the sudoers" \
    "rule's setup alias, docs/security.md#sudo)" >&2
  exit 4
}
ensure() {  # KIND PATH: the shared path exists, the app user's, not readable by others
  local target="$SHARED/$2" mode=0750 kind=directory found
  [ "$1" = file ] && mode=0640 kind="regular*file"  # "regular file", "regular empty file"
  mkdir -p -- "$(dirname -- "$target")"  # the directories above it: the deploy user's
  if [ ! -e "$target" ] && [ ! -L "$target" ]; then
    if [ "$1" = dir ]; then
      sudo -n install -d -o "$APP_USER" -g "$group" -m "$mode" -- "$target" || refused "$2"
      made+=("$2/")
    else
      sudo -n install -m "$mode" -o "$APP_USER" -g "$group" -- /dev/null "$target" || refused "$2"
      made+=("$2")
    fi
  fi
  found=$(stat -c '%U:%G %a %F' -- "$target")  # the entry itself: never followed
  if [ "${found%% *}" != "$APP_USER:$group" ]; then
    echo "shared/$2 is owned by ${found%% *}, not by the app user $APP_USER: run \`fab setup\`," \
      "which hands it over (docs/security.md#ownership)" >&2
    exit 4
  fi
  # shellcheck disable=SC2053  # $kind is a pattern
  if [ "$1" = dir ] && [[ ${found#* * } != $kind ]]; then
    echo "shared/$2 is not a directory (LINKED_DIRS)" >&2; exit 4
  fi
  # shellcheck disable=SC2053
  if [ "$1" = file ] && [[ ${found#* * } != $kind ]]; then
    echo "shared/$2 is not a file (LINKED_FILES)" >&2; exit 4
  fi
  found=${found#* }
  [ "${found%% *}" = "${mode#0}" ] || as_app chmod "$mode" -- "$target"
}
link() {  # KEY PATH: the release's PATH -> shared/PATH
  local inside="$RELEASE/$2"
  if [ -e "$inside" ] || [ -L "$inside" ]; then
    echo "the release ships $2 itself, which $1 keeps in shared/: leave it out of the" \
      "release (EXCLUDES, or git rm --cached) so the data in shared/$2 is used" >&2
    exit 4
  fi
  mkdir -p -- "$(dirname -- "$inside")"
  ln -s -- "$SHARED/$2" "$inside"
}
while IFS= read -r path; do [ -z "$path" ] || ensure dir "$path"; done <<< "$DIRS"
while IFS= read -r path; do [ -z "$path" ] || ensure file "$path"; done <<< "$FILES"
if [ -n "$RELEASE" ]; then
  while IFS= read -r path; do [ -z "$path" ] || link LINKED_DIRS "$path"; done <<< "$DIRS"
  while IFS= read -r path; do [ -z "$path" ] || link LINKED_FILES "$path"; done <<< "$FILES"
fi
if [ ${#made[@]} -gt 0 ]; then echo "made ${made[*]/#/shared/}"; else echo "no change"; fi
