# Probe the health path once, from the host itself (service.health).
#
# In: URL (http://<host>:<port><path>), HEALTH_HOST (the Host header; empty: the URL's).
# Out: "status=<HTTP status>" (000: no answer); healthy is status 200 (lib.sh `healthy`).
kv status "$(probe "$URL")"
