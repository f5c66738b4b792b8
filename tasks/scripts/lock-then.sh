# Take the deploy lock, then (when it was taken) run more in the same SSH session.
# env: APP_USER (empty: the SSH user); lock.sh's (ROOT LOCK OWNER FORCE AUDIT REVLOG SETUP)
# and its text LOCK_BODY, run as the app user: it prints `acquired`, or `held` and the
# holder; THEN_PROGRAM (run as the SSH user once the lock is taken, its output after a
# `--- then` line; empty: nothing).
# Exit: lock.sh's status when it fails; THEN_PROGRAM's when it fails (the lock is then held).
# lock.sh runs in a bash of its own (strict mode holds there: this one tests its status);
# THEN_PROGRAM in a subshell of this one (no bash started).
lock() {
  as_app bash -c "set -euo pipefail; $(declare -p ROOT LOCK OWNER FORCE AUDIT REVLOG SETUP); $LOCK_BODY"
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
