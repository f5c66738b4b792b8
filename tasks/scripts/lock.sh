# Take the deploy lock: mkdir is atomic, so of two deploys exactly one gets it; the owner
# file is written aside and renamed in, so a reader never sees half of it. Run as the owner
# of ROOT (lock-then.sh), who alone can write there.
# env: ROOT LOCK OWNER (the owner file, since= filled in here; it holds the token: given on
# stdin, written by bash's printf, no process gets it) FORCE (yes: remove a held lock first)
# AUDIT (with FORCE: the revisions.log line recording the break) REVLOG SETUP
[ -d "$ROOT" ] || { echo "deploy root $ROOT is missing: run \`$SETUP\` first" >&2; exit 3; }
broke=no
if [ "$FORCE" = yes ] && [ -d "$LOCK" ]; then rm -rf -- "$LOCK"; broke=yes; fi
if mkdir -- "$LOCK" 2>/dev/null; then
  printf -v now '%(%s)T' -1
  while IFS= read -r line; do  # the owner file, since= the host's time
    if [[ $line == since=* ]]; then line="since=$now"; fi
    printf '%s\n' "$line"
  done <<< "${OWNER%$'\n'}" > "$LOCK/owner.new"
  mv -f -- "$LOCK/owner.new" "$LOCK/owner"  # whoever reads it reads all of it, or none yet
  if [ "$broke" = yes ] && [ -n "${AUDIT:-}" ]; then printf '%s\n' "$AUDIT" >> "$REVLOG"; fi
  echo acquired
else
  echo held
  for _ in 1 2 3 4 5 6 7 8 9 10; do  # just taken: its owner file follows within moments
    [ -e "$LOCK/owner" ] || [ ! -d "$LOCK" ] && break
    sleep 0.1
  done
  printf 'now=%(%s)T\n' -1
  cat -- "$LOCK/owner" 2>/dev/null || true
fi
