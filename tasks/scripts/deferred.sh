# Work deferred to this session (a deploy's cleanup and record), run before what follows, as
# the owner of the deploy root (lib.sh's as_owner: the SSH user).
# env: DEFERRED, one line per part: the base64 of a bash program, a space, its label; ROOT
# APP_USER. A part that fails prints `warning: LABEL failed` and its output on stderr; the
# rest go on.
while read -r program label; do
  [ -n "$program" ] || continue
  if ! out=$(printf '%s' "$program" | base64 -d | as_owner bash 2>&1); then
    echo "warning: $label failed: $out" >&2
  fi
done <<< "$DEFERRED"
