# What `fab plan` reads on a host, changing nothing (run as the SSH user, root reads by sudo -n).
# In: UNIT CONF ENV_FILE APP_USER. Prints the app user's group, then the unit file, the
# gunicorn settings and the names (only) of the secrets in shared/.env, each after a
# "--- <what>" line.
kv group "$(id -gn -- "$APP_USER" 2>/dev/null || true)"
echo "--- unit"
sudo -n cat -- "$UNIT" 2>/dev/null || true
echo "--- conf"
sudo -n cat -- "$CONF" 2>/dev/null || true
echo "--- secrets"
sudo -n sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' -- "$ENV_FILE" 2>/dev/null || true
