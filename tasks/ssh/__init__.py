"""SSH: `Host` (one connection per host per command), host keys, the command's hosts, fan-out over them."""
