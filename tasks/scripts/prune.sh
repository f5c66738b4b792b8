# Remove old releases and unused venvs (run as the deploy user, whose trees they are).
# env: ROOT; RELEASES, VENVS: one name a line (releases/NAME, venvs/NAME and its lock).
cd -- "$ROOT" || exit 3
while IFS= read -r name; do
  if [ -n "$name" ]; then rm -rf -- "releases/$name"; fi
done <<< "$RELEASES"
while IFS= read -r name; do
  if [ -n "$name" ]; then rm -rf -- "venvs/$name" "venvs/.$name.lock"; fi
done <<< "$VENVS"
