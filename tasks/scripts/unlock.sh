# Release the deploy lock if TOKEN is its token (or TOKEN is empty); print who held it.
# env: LOCK TOKEN AUDIT (when set: the revisions.log line recording a break) REVLOG
[ -d "$LOCK" ] || { echo "none"; exit 0; }
echo "now=$(date +%s)"
cat -- "$LOCK/owner" 2>/dev/null || true
if [ -z "$TOKEN" ] || grep -qx "token=$TOKEN" "$LOCK/owner" 2>/dev/null; then
  rm -rf -- "$LOCK"
  if [ -n "${AUDIT:-}" ]; then printf '%s\n' "$AUDIT" >> "$REVLOG"; fi
else
  echo "kept=yes"
fi
