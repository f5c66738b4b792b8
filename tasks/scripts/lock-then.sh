# Take the deploy lock, then (when it was taken) run more in the same SSH session.
# env: APP_USER; lock.sh's (ROOT LOCK OWNER FORCE AUDIT REVLOG SETUP) and its text LOCK_BODY,
# run as the app user: it prints `acquired`, or `held` and the holder; THEN_PROGRAM (run as
# the SSH user once the lock is taken, its output after a `--- then` line; empty: nothing).
# Exit: lock.sh's status when it fails; THEN_PROGRAM's when it fails (the lock is then held).
settings=$(declare -p ROOT LOCK OWNER FORCE AUDIT REVLOG SETUP)
out=$(as_app bash -c "set -euo pipefail; $settings; $LOCK_BODY") || {
  code=$?
  printf '%s\n' "$out"
  exit "$code"
}
printf '%s\n' "$out"
if [ "${out%%$'\n'*}" = acquired ] && [ -n "$THEN_PROGRAM" ]; then
  echo "--- then"
  bash -c "$THEN_PROGRAM"
fi
