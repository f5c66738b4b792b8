# Release the deploy lock if TOKEN is its token (or TOKEN is empty); print who held it.
# env: LOCK TOKEN (read from stdin, never in a command line: compared by bash itself, no
# process gets it) AUDIT (when set: the revisions.log line recording a break) REVLOG; ROOT and
# APP_USER: the lock is removed and revisions.log written as the owner of ROOT (lib.sh's
# as_owner: the SSH user).
[ -d "$LOCK" ] || { echo "none"; exit 0; }
echo "now=$(date +%s)"
owner=$(cat -- "$LOCK/owner" 2>/dev/null || true)
[ -z "$owner" ] || printf '%s\n' "$owner"
mine=no
[ -n "$TOKEN" ] || mine=yes
while IFS= read -r line; do
  if [[ $line == "token=$TOKEN" ]]; then mine=yes; fi
done <<< "$owner"
if [ "$mine" = yes ]; then
  as_owner rm -rf -- "$LOCK"
  if [ -n "${AUDIT:-}" ]; then printf '%s\n' "$AUDIT" | as_owner tee -a -- "$REVLOG" > /dev/null; fi
else
  echo "kept=yes"
fi
