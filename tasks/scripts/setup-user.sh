# Create APP_USER (a system user, home ROOT, no login) when missing.
# env: APP_USER ROOT. Out: `changed` or `no change`, then the user's group.
if id -u "$APP_USER" >/dev/null 2>&1; then
  echo "no change"
else
  sudo -n useradd --system --user-group --home-dir "$ROOT" --no-create-home     --shell /usr/sbin/nologin "$APP_USER"
  echo changed
fi
id -gn "$APP_USER"
