# shellcheck shell=bash
# The app's data that outlives a release: LINKED_DIRS and LINKED_FILES, kept in shared/.
#
# In: APP_USER SHARED DIRS FILES (one path a line, relative to the app's directory), and
# RELEASE: empty (fab setup) to only make the shared paths, or a release to link them into.
# Uses lib.sh's as_app. Shared paths are made when missing (directories 0750, files 0640,
# owned by the app user: not readable by other users) and never removed or replaced. A
# release that ships one of the paths itself is refused, naming it (nothing of shared/ is
# touched). Out: "made shared/<path> ..." or "no change"; exit 4: refused.
made=()
ensure() {  # KIND PATH: the shared path exists, as the app user, not readable by others
  local target="$SHARED/$2" mode=0750
  [ "$1" = file ] && mode=0640
  as_app mkdir -p -m 0750 -- "$(dirname -- "$target")"
  if [ "$1" = dir ] && [ ! -e "$target" ]; then
    as_app mkdir -m "$mode" -- "$target"
    made+=("$2/")
  elif [ "$1" = file ] && [ ! -e "$target" ]; then
    # shellcheck disable=SC2016  # $1 is the inner shell's
    as_app sh -c 'umask 027 && : > "$1"' _ "$target"
    made+=("$2")
  fi
  [ "$(stat -c %a -- "$target")" = "${mode#0}" ] || as_app chmod "$mode" -- "$target"
  if [ "$1" = dir ] && [ ! -d "$target" ]; then
    echo "shared/$2 is not a directory (LINKED_DIRS)" >&2; exit 4
  fi
  if [ "$1" = file ] && [ ! -f "$target" ]; then
    echo "shared/$2 is not a file (LINKED_FILES)" >&2; exit 4
  fi
}
link() {  # KEY PATH: the release's PATH -> shared/PATH
  local inside="$RELEASE/$2"
  if [ -e "$inside" ] || [ -L "$inside" ]; then
    echo "the release ships $2 itself, which $1 keeps in shared/: leave it out of the" \
      "release (EXCLUDES, or git rm --cached) so the data in shared/$2 is used" >&2
    exit 4
  fi
  as_app mkdir -p -- "$(dirname -- "$inside")"
  as_app ln -s -- "$SHARED/$2" "$inside"
}
while IFS= read -r path; do [ -z "$path" ] || ensure dir "$path"; done <<< "$DIRS"
while IFS= read -r path; do [ -z "$path" ] || ensure file "$path"; done <<< "$FILES"
if [ -n "$RELEASE" ]; then
  while IFS= read -r path; do [ -z "$path" ] || link LINKED_DIRS "$path"; done <<< "$DIRS"
  while IFS= read -r path; do [ -z "$path" ] || link LINKED_FILES "$path"; done <<< "$FILES"
fi
if [ ${#made[@]} -gt 0 ]; then echo "made ${made[*]/#/shared/}"; else echo "no change"; fi
