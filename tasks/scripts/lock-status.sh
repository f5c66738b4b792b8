# Who holds the deploy lock: "none", or the host's time and the owner file.
# env: LOCK
[ -d "$LOCK" ] || { echo "none"; exit 0; }
echo "held"
echo "now=$(date +%s)"
cat -- "$LOCK/owner" 2>/dev/null || true
