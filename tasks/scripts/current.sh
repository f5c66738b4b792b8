# The release `current` points to (service.current_release).
#
# In: CURRENT.
# Out: "current=<release name>", or "current=" when there is no current link.
kv current "$(current_release)"
