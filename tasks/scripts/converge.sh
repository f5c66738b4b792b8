# Put setup's files in place for a deploy (tasks/host/converge.py), each as temp + rename: sent
# alone (a host without the web process) or before switch.sh in the switch's body, so the
# files change just before the USR2 re-exec that reads them. Every file is root's, in a
# root-owned directory (the units, /etc/<app>/gunicorn.conf.py and /etc/<app>/env): written by
# sudo -n as a temp file beside it (`install`, the content through stdin, which the SSH user
# reads from its own STAGE), then renamed over it. Each root command is a fixed line of the
# sudoers rule's setup alias (tasks/host/sudoers.py).
# In: MODE (apply | back | forget) STAGE (the SSH user's private dir the upload step staged
# them in: 1, 2, ... in FILES' order) FILES (one a line, tab-separated: DEST OWNER GROUP
# MODE HAD, HAD yes when the file existed before) RELOAD (yes: a unit is among them,
# daemon-reload) ENABLE (units to enable at boot, one a line).
# apply: keeps each file there as DEST.fabdeploy-old, installs the staged one, removes
#   STAGE; any failure puts the old files back (an EXIT trap). Defines `setup_files_back`,
#   which switch.sh calls before it hands the requests back to the old master.
# back: the files of before back in place (DEST.fabdeploy-old; removed where there was none).
# forget: the copies of before removed (the deploy ended).
each_file() {  # FUNCTION: FUNCTION N DEST OWNER GROUP MODE HAD, for each line of FILES
  local n=0 dest owner group mode had
  while IFS=$'\t' read -r dest owner group mode had; do
    [ -n "$dest" ] || continue
    n=$((n + 1))
    "$1" "$n" "$dest" "$owner" "$group" "$mode" "$had"
  done <<< "$FILES"
}
reload_units() {
  if [ "$RELOAD" = yes ]; then sudo -n systemctl daemon-reload; fi
}
forget_one() {  # N DEST OWNER GROUP MODE HAD
  sudo -n rm -f -- "$2.fabdeploy-old"
}
put_one() {  # N DEST OWNER GROUP MODE HAD
  if [ "$6" = yes ]; then sudo -n cp -p -- "$2" "$2.fabdeploy-old"; fi
  # shellcheck disable=SC2024  # on purpose: the SSH user reads its own staged file
  sudo -n install -m "$5" -o "$3" -g "$4" -- /dev/stdin "$2.fabdeploy-new" < "$STAGE/$1"
  sudo -n mv -fT -- "$2.fabdeploy-new" "$2"
  echo "setup's files: ${2} updated"
}
back_one() {  # N DEST OWNER GROUP MODE HAD
  if [ "$6" = yes ]; then  # the copy of before, where apply got as far as making it
    sudo -n mv -fT -- "$2.fabdeploy-old" "$2" 2>/dev/null || true
  else
    sudo -n rm -f -- "$2"
  fi
}
setup_files_back() {  # the files of before back in place (again: nothing more to do)
  [ "$MODE" = apply ] || return 0
  MODE=restored
  echo "setup's files: back as they were" >&2
  each_file back_one || true
  reload_units || true
  rm -rf -- "$STAGE"
}
on_exit() {  # STATUS: a failed run (this script's or the switch's) ends with the old files
  [ "$1" -eq 0 ] || setup_files_back
  exit "$1"
}
case $MODE in
  apply)
    trap 'on_exit $?' EXIT
    each_file forget_one  # no copy of an earlier deploy may be taken for this one's
    each_file put_one
    reload_units
    while IFS= read -r unit; do  # one unit a command: a fixed line each
      if [ -n "$unit" ]; then sudo -n systemctl enable -- "$unit" >/dev/null 2>&1; fi
    done <<< "${ENABLE:-}"
    rm -rf -- "$STAGE"
    ;;
  back) each_file back_one; reload_units ;;
  forget) each_file forget_one ;;
  *) echo "converge.sh: unknown MODE $MODE" >&2; exit 2 ;;
esac
