# Take the deploy lock, then (when it was taken) run more in the same SSH session.
# env: APP_USER (empty: the SSH user) ROOT: lock.sh runs as the owner of ROOT (lib.sh's
# as_owner: the SSH user); lock.sh's (ROOT LOCK FORCE AUDIT REVLOG SETUP), and its OWNER read
# from this script's stdin (it holds the token: never in a command line, so never in `ps`
# nor in a journal) and handed to lock.sh on its stdin; lock.sh's text LOCK_BODY: it prints
# `acquired`, or `held` and the holder; THEN_PROGRAM (run as the SSH user once the lock is
# taken, its output after a `--- then` line; empty: nothing).
# Exit: lock.sh's status when it fails; THEN_PROGRAM's when it fails (the lock is then held).
# lock.sh runs in a bash of its own (strict mode holds there: this one tests its status);
# THEN_PROGRAM in a subshell of this one (no bash started).
lock() {
  printf '%s' "$OWNER" | as_owner bash -c \
    "set -euo pipefail; $(declare -p ROOT LOCK FORCE AUDIT REVLOG SETUP); OWNER=\$(cat); $LOCK_BODY"
}
out=$(lock) || {
  code=$?
  printf '%s\n' "$out"
  exit "$code"
}
printf '%s\n' "$out"
if [ "${out%%$'\n'*}" = acquired ] && [ -n "$THEN_PROGRAM" ]; then
  echo "--- then"
  (eval "$THEN_PROGRAM")
fi
