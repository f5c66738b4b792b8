# One look at a canary during its bake (tasks/host/canary.py): the requests its gunicorn wrote
# to the access log since OFFSET, counted by status code, and the probe URLs requested again.
# The access log lies in shared/log, the app user's directory: it is read as the app user
# (as_app), as `fab logs` reads it, never as the deploy user or root (docs/security.md#ownership).
#
# In: APP_USER ACCESS_LOG OFFSET (bytes of it counted already) AGENT (the User-Agent of
#     fabdeploy's own probes: their lines are not counted) PROBE_URLS (one a line; empty: none)
#     HEALTH_HOST (the probes' Host header).
# Out: "offset=<bytes counted up to: the end of the last whole line>", "missing=yes" (no log to
#      read), "rotated=yes" (shorter than OFFSET: truncated by logrotate, read from its start),
#      "codes=<status>:<count> ..." (the requests, by status), "ours=<n>" (fabdeploy's probes),
#      "unparsed=<n>" (lines without a status after a quoted request: another log format),
#      "failed=<count>:<path> ..." (the paths that answered a 5xx, no query; 20 at most),
#      "probes=<status>@<url> ..." (000: no answer).
export LC_ALL=C  # lengths in bytes
offset=${OFFSET:-0}
size=$(as_app stat -c %s -- "$ACCESS_LOG" 2>/dev/null) || size=""
if [[ ! $size =~ ^[0-9]+$ ]]; then
  kv missing yes
  size=0 offset=0
fi
if [ "$size" -lt "$offset" ]; then
  kv rotated yes
  offset=0
fi
chunk=""
if [ "$size" -gt "$offset" ]; then
  chunk=$(as_app tail -c +$((offset + 1)) -- "$ACCESS_LOG" 2>/dev/null | head -c $((size - offset)); echo .)
  chunk=${chunk%.}
fi
partial=${chunk##*$'\n'}  # after the last newline: a line still being written, read next time
whole=${chunk%"$partial"}
kv offset $((offset + ${#whole}))
printf '%s' "$whole" | awk -v agent="\"$AGENT\"" '
  index($0, agent) { ours++; next }
  match($0, /" [1-5][0-9][0-9]( |$)/) {
    code = substr($0, RSTART + 2, 3)
    codes[code]++
    if (code ~ /^5/) {  # the path of the request line before it, without its query
      request = substr($0, 1, RSTART - 1)
      request = substr(request, index(request, "\"") + 1)
      split(request, words, " ")
      path = words[2]
      sub(/[?].*/, "", path)
      if (path != "" && (path in failed || kinds < 20)) { kinds += !(path in failed); failed[path]++ }
    }
    next
  }
  /./ { unparsed++ }
  END {
    line = ""
    for (code in codes) line = line " " code ":" codes[code]
    print "codes=" substr(line, 2)
    line = ""
    for (path in failed) line = line " " failed[path] ":" path
    print "failed=" substr(line, 2)
    print "ours=" ours + 0
    print "unparsed=" unparsed + 0
  }'
probes=""
while IFS= read -r url; do
  [ -n "$url" ] || continue
  probes+=" $(probe "$url")@$url"
done <<< "${PROBE_URLS:-}"
kv probes "${probes# }"
