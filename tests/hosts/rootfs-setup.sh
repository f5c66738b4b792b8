#!/bin/bash
# Runs inside a fresh debootstrap root (chroot) once, when tests/rootfs.py builds it:
# turns a minbase Debian into the test server every real-systemd host boots from.
# The per-host parts (hostname, machine-id, host key, address, the client's key) are
# written by tests/hostkit.py into each host's own overlay, never here.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

# The deploy user: passwordless sudo, as on a cloud image.
useradd --create-home --uid 2000 --user-group --shell /bin/bash deploy
install -d -m 700 -o deploy -g deploy /home/deploy/.ssh
printf 'deploy ALL=(ALL:ALL) NOPASSWD:ALL\n' > /etc/sudoers.d/fabdeploy-deploy
chmod 440 /etc/sudoers.d/fabdeploy-deploy

# sshd: keys only, one ed25519 host key written per host, a log file the tests can count.
rm -f /etc/ssh/ssh_host_*
cat > /etc/ssh/sshd_config.d/fabdeploy-test.conf <<'CONF'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
MaxStartups 100:30:200
MaxSessions 64
CONF
mkdir -p /etc/systemd/system/ssh.service.d
cat > /etc/systemd/system/ssh.service.d/fabdeploy-test.conf <<'CONF'
[Service]
ExecStart=
ExecStart=/usr/sbin/sshd -D $SSHD_OPTS -E /var/log/sshd.log
CONF

# The network: systemd-networkd gives host0 the address each host's overlay names.
systemctl enable systemd-networkd.service ssh.service
systemctl disable ssh.socket 2>/dev/null || true

# Nothing that would run on its own during a test, or wait for a network we do not have.
for unit in systemd-networkd-wait-online.service sshd-keygen.service \
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
  fstrim.timer man-db.timer console-getty.service getty@tty1.service; do
  systemctl mask "$unit" >/dev/null 2>&1 || true
done

# redis-server (the Django example's broker) starts only when a test starts it.
systemctl disable redis-server.service >/dev/null 2>&1 || true

# Keep the journal across reboots of a host, as Debian servers do.
mkdir -p /var/log/journal
rm -f /etc/hostname /etc/machine-id /var/lib/dbus/machine-id
: > /etc/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/*
