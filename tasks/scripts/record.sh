# Append one line to revisions.log (run as the app user). env: LINE LOG
printf '%s\n' "$LINE" >> "$LOG"
