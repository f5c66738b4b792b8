# Append one line to revisions.log, as the owner of the deploy root (lib.sh's as_owner: the
# SSH user; the app user cannot rewrite the history). env: LINE LOG ROOT APP_USER
printf '%s\n' "$LINE" | as_owner tee -a -- "$LOG" > /dev/null
