"""fabdeploy's SSH layer against real hosts: verified host keys, trust opt-in, host-prefixed output.

Everything here runs the `fab` executable the way a user does, from a throwaway project.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest

from tests.conftest import SKIP_TAG
from tests.hostkit import TestHost

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))

FABFILE = '''
from invoke import task

from tasks import ns
from tasks.ssh import session


@task
def whoami(c):
    """Print each host's hostname and login user."""
    _, hosts = session.session(c)
    for host in hosts:
        host.run("hostname; id -un")


ns.add_task(whoami)
'''


def project(tmp_path: Path, hosts: list[TestHost], known_hosts: Path, extra: str = "") -> Path:
    key = hosts[0].client_key
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "fabfile.py").write_text(FABFILE)
    (tmp_path / "config" / "staging.env").write_text(
        "APP_NAME=hello\n"
        f"HOSTS={','.join(f'{h.user}@{h.address}:{h.port}' for h in hosts)}\n"
        f"SSH_KEY={key}\nKNOWN_HOSTS={known_hosts}\n{extra}"
    )
    return tmp_path


def fab(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(root)}  # no ~/.ssh/known_hosts
    return subprocess.run(
        [FAB, *args], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def fingerprint(host: TestHost) -> str:
    from tasks.ssh.hostkeys import fingerprint as fp

    _, kind, blob = host.host_key_line.split()[:3]
    return fp(paramiko.PKey.from_type_string(kind, __import__("base64").b64decode(blob)))


def test_known_host_runs_and_every_line_carries_its_host(tmp_path: Path, make_hosts) -> None:
    hosts = make_hosts(2)
    known = tmp_path / "known_hosts"
    known.write_text("".join(h.host_key_line + "\n" for h in hosts))
    proc = fab(project(tmp_path, hosts, known), "staging", "whoami")
    assert proc.returncode == 0, proc.stderr
    for h in hosts:
        label = h.address if h.port == 22 else f"{h.address}:{h.port}"
        assert f"[{label}] {h.name}\n" in proc.stdout
        assert f"[{label}] {h.user}\n" in proc.stdout
    assert all(line.startswith("[") for line in proc.stdout.splitlines())
    assert hosts[0].name != hosts[1].name


def test_unknown_host_is_refused_with_fingerprint_then_trusted_on_request(
    tmp_path: Path, host: TestHost
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    root = project(tmp_path, [host], known)
    refused = fab(root, "staging", "whoami")
    assert refused.returncode == 1
    assert f"unknown host key ssh-ed25519 {fingerprint(host)}" in refused.stderr
    assert "fab staging trust" in refused.stderr and "TRUST_NEW_HOSTS=yes" in refused.stderr
    assert "Traceback" not in refused.stderr and host.name not in refused.stdout
    assert known.read_text() == ""

    trusted = fab(root, "staging", "trust")
    assert trusted.returncode == 0, trusted.stderr
    assert fingerprint(host) in trusted.stdout
    assert host.host_key_line.split()[2] in known.read_text()

    again = fab(root, "staging", "whoami")
    assert again.returncode == 0, again.stderr
    assert host.name in again.stdout


def test_trust_new_hosts_setting_accepts_and_records(tmp_path: Path, host: TestHost) -> None:
    known = tmp_path / "known_hosts"
    proc = fab(project(tmp_path, [host], known, "TRUST_NEW_HOSTS=yes\n"), "staging", "whoami")
    assert proc.returncode == 0, proc.stderr
    assert f"trusted new host key ssh-ed25519 {fingerprint(host)}" in proc.stdout
    assert host.host_key_line.split()[2] in known.read_text()


def test_changed_host_key_is_refused_even_when_trusting_new_hosts(
    tmp_path: Path, host: TestHost
) -> None:
    other = paramiko.RSAKey.generate(1024)
    label = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
    known = tmp_path / "known_hosts"
    known.write_text(
        f"{label} ssh-ed25519 {_other_ed25519(tmp_path)}\n{label} ssh-rsa {other.get_base64()}\n"
    )
    proc = fab(project(tmp_path, [host], known, "TRUST_NEW_HOSTS=yes\n"), "staging", "whoami")
    assert proc.returncode == 1
    assert "HOST KEY CHANGED" in proc.stderr and fingerprint(host) in proc.stderr
    assert "ssh-keygen -R" in proc.stderr and "Traceback" not in proc.stderr
    assert host.name not in proc.stdout


def test_dash_h_overrides_the_hosts_of_the_environment(tmp_path: Path, host: TestHost) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(host.host_key_line + "\n")
    root = project(tmp_path, [host], known)
    env_file = root / "config" / "staging.env"
    env_file.write_text(env_file.read_text().replace(f"@{host.address}", "@192.0.2.1"))
    proc = fab(root, "-H", f"{host.user}@{host.address}:{host.port}", "staging", "whoami")
    assert proc.returncode == 0, proc.stderr
    assert host.name in proc.stdout


def _other_ed25519(tmp_path: Path) -> str:
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key.with_suffix(".pub").read_text().split()[1]


def test_dash_i_and_dash_s_keep_working(tmp_path: Path, host: TestHost) -> None:
    known = tmp_path / "ssh_known_hosts"
    known.write_text(host.host_key_line + "\n")
    root = project(tmp_path, [host], tmp_path / "unused_known_hosts")
    env_file = root / "config" / "staging.env"
    lines = env_file.read_text().splitlines()
    env_file.write_text("".join(f"{line}\n" for line in lines if line.startswith("APP_NAME")))

    (root / "known_hosts_for_i").write_text(host.host_key_line + "\n")
    env_file.write_text(env_file.read_text() + f"KNOWN_HOSTS={root / 'known_hosts_for_i'}\n")
    with_i = fab(
        root, "-i", str(host.client_key), "-H", f"deploy@{host.address}", "staging", "whoami"
    )
    assert with_i.returncode == 0, with_i.stderr
    assert host.name in with_i.stdout

    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(
        f"Host web-alias\n  HostName {host.address}\n  User deploy\n  Port {host.port}\n"
        f"  IdentityFile {host.client_key}\n  UserKnownHostsFile {known}\n"
    )
    env_file.write_text("APP_NAME=hello\n")  # no key, no known_hosts: all from ssh_config
    with_s = fab(root, "-S", str(ssh_config), "-H", "web-alias", "staging", "whoami")
    assert with_s.returncode == 0, with_s.stderr
    assert f"{host.name}\n" in with_s.stdout and "deploy\n" in with_s.stdout


def _route_between(a: TestHost, b: TestHost) -> None:
    """Let netns hosts ``a`` and ``b`` reach each other through this machine: forwarding on
    their two veths only (gone with them) and a /32 route in each host via its veth's end."""
    if a.mode != "netns":
        pytest.skip(f"{SKIP_TAG} routing between hosts is set up for netns hosts only")
    for one, other in ((a, b), (b, a)):
        Path(f"/proc/sys/net/ipv4/conf/{one.veth}/forwarding").write_text("1\n")
        near = str(ipaddress.ip_address(one.address) - 1)  # the veth's end on this machine
        one.sh(f"ip route replace {other.address}/32 via {near}")


def test_proxyjump_hop_host_key_is_checked_like_the_host(tmp_path: Path, make_hosts) -> None:
    jump, target = make_hosts(2)
    _route_between(jump, target)
    known = tmp_path / "known_hosts"
    known.write_text(target.host_key_line + "\n")  # the target known, its jump host not
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(
        f"Host web\n  HostName {target.address}\n  Port {target.port}\n  User deploy\n"
        f"  IdentityFile {target.client_key}\n  ProxyJump bastion\n"
        f"Host bastion\n  HostName {jump.address}\n  Port {jump.port}\n  User deploy\n"
        f"  IdentityFile {jump.client_key}\n"
    )
    root = project(tmp_path, [target], known)
    (root / "config" / "staging.env").write_text(f"APP_NAME=hello\nKNOWN_HOSTS={known}\n")
    run = ("-S", str(ssh_config), "-H", "web", "staging")
    logins = target.root / "log" / "sshd.log"
    before = logins.read_text().count("Accepted publickey")

    refused = fab(root, *run, "whoami")
    assert refused.returncode == 1
    assert (
        f"jump host bastion ({jump.address}): unknown host key ssh-ed25519 {fingerprint(jump)}"
        in refused.stderr
    )
    assert "fab staging trust" in refused.stderr and "Traceback" not in refused.stderr
    assert target.name not in refused.stdout and known.read_text() == target.host_key_line + "\n"
    assert logins.read_text().count("Accepted publickey") == before  # the target never reached

    trusted = fab(root, *run, "trust")
    assert trusted.returncode == 0, trusted.stderr
    assert (
        f"jump host bastion ({jump.address}): host key ssh-ed25519 {fingerprint(jump)} is trusted"
        in trusted.stdout
    )
    assert jump.host_key_line.split()[2] in known.read_text()
    again = fab(root, *run, "whoami")
    assert again.returncode == 0, again.stderr
    assert f"{target.name}\n" in again.stdout  # through the jump host, to the target

    jump_key = jump.host_key_line.split()[2]
    known.write_text(known.read_text().replace(jump_key, _other_ed25519(tmp_path)))
    before = logins.read_text().count("Accepted publickey")
    changed = fab(root, *run, "trust")  # a changed key is refused, by `fab trust` too
    assert changed.returncode == 1
    assert f"jump host bastion ({jump.address}): HOST KEY CHANGED" in changed.stderr
    assert fingerprint(jump) in changed.stderr and f"ssh-keygen -R {jump.address}" in changed.stderr
    assert logins.read_text().count("Accepted publickey") == before
