# One host's deploy history (monitor.releases): the current release, then revisions.log.
#
# In: CURRENT REVLOG LIMIT (entries wanted; 0: the whole log).
# Out: "current=<release>" (when there is a current link), "log=yes" when revisions.log is
#      readable, then its last lines (enough for LIMIT entries), each as "audit <line>".
if [ -L "$CURRENT" ]; then kv current "$(current_release)"; fi
if [ -r "$REVLOG" ]; then
  kv log yes
  if [ "$LIMIT" -gt 0 ]; then tail -n "$((LIMIT * 4 + 20))" "$REVLOG"; else cat "$REVLOG"; fi \
    | sed 's/^/audit /'
fi
