"""The test hosts themselves: SSH with host-key checking, isolation, sudo/systemctl, teardown.

paramiko directly (no fabdeploy code), RejectPolicy and the kit's known_hosts throughout.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko
import pytest

from tests.conftest import HostFactory, missing_for_netns
from tests.hostkit import MODE_ENV, HostKit, HostKitError, NeedsRootError, TestHost
from tests.hosts import nspawn

REPO = Path(__file__).resolve().parents[2]


def connect(
    host: TestHost,
    known_hosts: Path | None = None,
    policy: paramiko.MissingHostKeyPolicy | None = None,
) -> paramiko.SSHClient:
    """An SSH connection to ``host`` as its user, checking its key against ``known_hosts``."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts or host.known_hosts))
    client.set_missing_host_key_policy(policy or paramiko.RejectPolicy())
    try:
        client.connect(
            host.address,
            port=host.port,
            username=host.user,
            key_filename=str(host.client_key),
            look_for_keys=False,
            allow_agent=False,
            timeout=5,
            banner_timeout=5,
            auth_timeout=5,
        )
    except BaseException:
        client.close()
        raise
    return client


def run(client: paramiko.SSHClient, command: str, timeout: float = 30) -> tuple[int, str, str]:
    """Run ``command`` over ``client``: (exit status, stdout, stderr)."""
    _stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode()
    err = stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err


def http_get(url: str, timeout: float = 2) -> tuple[int, str]:
    """(status, body) of a GET, status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``check`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def route_is_ours(address: str) -> bool:
    """Whether the kernel would send to ``address`` through a hostkit veth or its guard route.

    Used instead of connecting to a torn-down host: without a hostkit route, a 10.x address
    goes out the default route, and probing it would send traffic off this machine.
    """
    out = subprocess.run(
        ["ip", "-o", "route", "get", address], capture_output=True, text=True, check=False
    )
    words = (out.stdout + out.stderr).split()
    return "unreachable" in words or any(w.startswith("fd") for w in words)


def port_open(address: str, port: int) -> bool:
    """Whether ``address:port`` accepts TCP (only ever probes loopback or hostkit routes)."""
    assert address.startswith("127.") or route_is_ours(address), f"{address} routes off-machine"
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def netns_names() -> set[str]:
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    ).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def report_startup(hosts: list[TestHost], capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        for h in hosts:
            print(
                f"\n    [hostkit] {h.name} ({h.mode}) started in {h.startup_seconds:.3f}s", end=""
            )
    for h in hosts:
        assert 0 < h.startup_seconds < 10, h


# 1 + 6 ---------------------------------------------------------------------------------------


def test_command_over_ssh_with_host_key_checking(
    host: TestHost, capsys: pytest.CaptureFixture[str]
) -> None:
    report_startup([host], capsys)
    assert host.known_hosts is not None
    assert host.host_key_line in host.known_hosts.read_text().splitlines()
    with connect(host) as client:
        status, out, err = run(client, "hostname; id -un")
    assert status == 0, err
    hostname, user = out.split()
    assert user == host.user
    if host.mode == "netns":
        assert hostname == host.name
        assert host.sh("hostname").stdout.strip() == host.name
        assert host.sh("id -un", user=host.user).stdout.strip() == host.user


# 2 -------------------------------------------------------------------------------------------


def test_unknown_or_wrong_host_key_is_refused(host: TestHost, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException):
        connect(host, known_hosts=empty)

    # a different key recorded for this address: refused even with AutoAddPolicy
    assert host.client_key is not None
    other = host.client_key.with_name(host.client_key.name + ".pub").read_text().split()
    hostname = host.host_key_line.split()[0]
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"{hostname} {other[0]} {other[1]}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        connect(host, known_hosts=wrong, policy=paramiko.AutoAddPolicy())

    with connect(host, known_hosts=empty, policy=paramiko.AutoAddPolicy()) as client:
        assert run(client, "echo ok")[1].strip() == "ok"


# 3 -------------------------------------------------------------------------------------------


def test_two_hosts_are_isolated(
    make_hosts: HostFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = make_hosts(2)
    report_startup([a, b], capsys)
    assert a.address != b.address
    assert a.name != b.name
    marker = f"fdt-marker-{uuid.uuid4().hex}"
    with connect(a) as ca, connect(b) as cb:
        assert run(ca, "hostname")[1].strip() == a.name
        assert run(cb, "hostname")[1].strip() == b.name
        status, _, err = run(ca, f"echo hello | sudo -n tee /srv/{marker} >/dev/null")
        assert status == 0, err
        assert run(ca, f"cat /srv/{marker}")[1] == "hello\n"
        assert run(cb, f"test -e /srv/{marker}")[0] == 1
        # each host answers only on its own address
        assert run(ca, "ip -4 -o addr show dev eth0")[1].split()[3].startswith(a.address + "/")
    assert (a.root / "srv" / marker).read_text() == "hello\n"
    assert not (b.root / "srv" / marker).exists()
    assert not (Path("/srv") / marker).exists()
    # deploy and its sudo rule exist in the hosts' private /etc, not the machine's
    assert "\ndeploy:" in (a.root / "etc" / "passwd").read_text()
    assert (a.root / "etc" / "sudoers.d" / "fabdeploy-deploy").exists()
    assert not Path("/etc/sudoers.d/fabdeploy-deploy").exists()


# 4 -------------------------------------------------------------------------------------------

DEMO_UNIT = """\
[Unit]
Description=hostkit demo

[Service]
User=deploy
WorkingDirectory=/srv
ExecStart=/usr/bin/python3 -m http.server 9000 --bind 0.0.0.0

[Install]
WantedBy=multi-user.target
"""


@pytest.mark.needs_root
def test_sudo_systemctl_and_journalctl(host: TestHost) -> None:
    url = host.url(9000)
    with connect(host) as c:
        assert run(c, "sudo -n true")[0] == 0
        status, _, err = run(
            c,
            f"printf %s {shlex.quote(DEMO_UNIT)}"
            " | sudo -n tee /etc/systemd/system/demo.service >/dev/null",
        )
        assert status == 0, err
        status, out, err = run(c, "sudo systemctl daemon-reload && sudo systemctl start demo")
        assert status == 0, out + err
        assert wait_for(lambda: http_get(url)[0] == 200), f"nothing on {url}"
        assert run(c, "sudo systemctl is-active demo")[1].strip() == "active"
        status, out, _ = run(c, "sudo systemctl show -p MainPID demo")
        mainpid = out.strip().split("=", 1)[1]
        assert mainpid.isdigit(), out
        assert run(c, f"ps -o user= -p {mainpid}")[1].strip() == "deploy"
        # the status file lives in the host's private /run, the log in its /var/log
        assert (host.root / "run" / "demo.service.status").exists()

        status, out, err = run(c, "sudo systemctl stop demo")
        assert status == 0, out + err
        assert run(c, "sudo systemctl is-active demo")[1].strip() == "inactive"
        assert wait_for(lambda: not port_open(host.address, 9000))

        for unit in ("demo", "demo.service"):
            status, out, err = run(c, f"journalctl -u {unit} -n 5 --no-pager")
            assert status == 0, err
            assert 'GET / HTTP/1.1" 200' in out, out
            assert len(out.splitlines()) <= 5
        assert run(c, "journalctl -u nosuchunit")[1].strip() == "-- No entries --"
    log = host.root / "log" / "journal" / "demo.service.log"
    assert 'GET / HTTP/1.1" 200' in log.read_text()


# 5 -------------------------------------------------------------------------------------------


def test_stop_tears_everything_down(
    make_hosts: HostFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = make_hosts(1)
    kit = make_hosts.kit
    h = hosts[0]
    answered_after_kill: list[bool] = []
    if h.mode == "netns":
        # Probe the port after the processes are killed but while the veth still routes to
        # the namespace (after teardown the address would route off this machine).
        original = HostKit._remove_netns_network

        def probe_then_remove(self: HostKit, host: TestHost) -> None:
            answered_after_kill.append(port_open(host.address, host.port))
            original(self, host)

        monkeypatch.setattr(HostKit, "_remove_netns_network", probe_then_remove)
    pids = {h.pid}
    if h.mode == "netns":
        # something left running inside the host, as a deploy would
        h.sh("setsid sleep 300 </dev/null >/dev/null 2>&1 &")
        listed = subprocess.run(
            ["ip", "netns", "pids", h.netns], capture_output=True, text=True, check=True
        ).stdout.split()
        # The list may also hold a helper that is exiting (the shell that started sleep):
        # follow the sshd and the stray sleep, which must both be alive now.
        # (seen as `setsid sleep 300` until setsid execs sleep in the same process)
        sleepers = {int(p) for p in listed if "sleep 300 " in _cmdline(int(p)).replace("\x00", " ")}
        assert len(sleepers) == 1, [(p, _cmdline(int(p))) for p in listed]
        pids |= sleepers
    assert all(alive(p) for p in pids)
    assert port_open(h.address, h.port)

    kit.stop()
    monkeypatch.undo()

    assert not {x.netns for x in kit.hosts if x.netns} & netns_names()
    assert not [p for p in pids if alive(p)]
    if h.mode == "netns":
        assert answered_after_kill == [False]
        assert not Path(f"/sys/class/net/{h.veth}").exists()
        assert (
            kit.subnet
            and kit.subnet
            not in subprocess.run(
                ["ip", "route", "show", "table", "all"], capture_output=True, text=True, check=True
            ).stdout
        )
    else:
        assert not port_open(h.address, h.port)
    kit.stop()  # idempotent
    # state on disk says stopped and can be loaded and stopped again
    again = HostKit.load(kit.workdir)
    assert again.stopped and [x.name for x in again.hosts] == [h.name]
    again.stop()


@pytest.mark.needs_root
def test_stop_after_half_done_start(
    new_hostkit: Callable[..., HostKit], monkeypatch: pytest.MonkeyPatch
) -> None:
    if missing_for_netns():
        pytest.skip(f"[hostkit] needs root and network namespaces; missing: {missing_for_netns()}")
    kit = new_hostkit()

    def boom(self: HostKit, host: TestHost, proc: Any) -> None:
        raise HostKitError("simulated failure after launch")

    monkeypatch.setattr(HostKit, "_wait_for_port", boom)
    with pytest.raises(HostKitError, match="simulated"):
        kit.start(1)
    h = kit.hosts[0]
    assert h.netns in netns_names()
    assert h.pid and wait_for(lambda: port_open(h.address, 22))
    kit.stop()
    assert h.netns not in netns_names()
    assert not alive(h.pid)
    assert not Path(f"/sys/class/net/{h.veth}").exists()


def test_cli_up_down_list(tmp_path: Path) -> None:
    base, state = tmp_path / "base", tmp_path / "state"
    cli = [sys.executable, "-m", "tests.hostkit", "--base", str(base)]
    up = subprocess.run(
        [*cli, "up", "--hosts", "1", "--state", str(state)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        assert up.returncode == 0, up.stderr
        name, address, port = up.stdout.split()
        env = dict(
            line.split("=", 1) for line in (state / "hosts.env").read_text().splitlines() if line
        )
        assert set(env) == {"HOSTS", "SSH_KEY", "KNOWN_HOSTS"}
        kit = HostKit.load(state)
        h = kit.hosts[0]
        assert (h.name, h.address, h.port) == (name, address, int(port))
        assert env["HOSTS"].startswith(f"{h.user}@{address}")
        with connect(h, known_hosts=Path(env["KNOWN_HOSTS"])) as c:
            assert run(c, "echo ok")[1] == "ok\n"
        listed = subprocess.run(
            [*cli, "list"], cwd=REPO, capture_output=True, text=True, timeout=30, check=True
        ).stdout
        assert str(state) in listed and name in listed
    finally:
        down = subprocess.run(
            [*cli, "down", "--state", str(state)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert down.returncode == 0, down.stderr
    assert not alive(h.pid)
    if h.mode == "netns":
        assert h.netns not in netns_names()
        assert not Path(f"/sys/class/net/{h.veth}").exists()
    else:
        assert not port_open(h.address, h.port)


# 7 -------------------------------------------------------------------------------------------


def test_loopback_mode(
    new_hostkit: Callable[..., HostKit],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(MODE_ENV, "loopback")
    kit = new_hostkit()
    assert kit.mode == "loopback"
    (h,) = kit.start(1)
    report_startup([h], capsys)
    assert h.address == "127.0.0.1" and h.port != 22
    assert h.host_key_line.startswith(f"[127.0.0.1]:{h.port} ssh-ed25519 ")
    with connect(h) as c:
        assert run(c, "echo ok") == (0, "ok\n", "")
    assert h.sh("echo ok").stdout == "ok\n"
    with pytest.raises(NeedsRootError, match="root and network namespaces"):
        kit.start(1)
    kit.stop()
    assert not alive(h.pid)
    assert not port_open(h.address, h.port)


def _cmdline(pid: int) -> str:
    """The NUL-separated command line of ``pid`` ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


# real systemd (systemd-nspawn) -----------------------------------------------------------------


@pytest.mark.parametrize("release", ["bookworm", "trixie"])
def test_real_systemd_hosts_boot_isolated_and_verified(
    make_hosts: HostFactory, release: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = make_hosts(2, release=release)
    report_startup([a, b], capsys)
    with capsys.disabled():
        print(f"\n    [hostkit] {a.release}: {a.systemd}, {a.python}", end="")
    assert a.mode == "nspawn" and a.address != b.address
    expected = {
        "bookworm": ("systemd 252", "Python 3.11"),
        "trixie": ("systemd 257", "Python 3.13"),
    }
    assert a.systemd.startswith(expected[release][0]) and a.python.startswith(expected[release][1])
    marker = f"fdt-marker-{uuid.uuid4().hex}"
    with connect(a) as ca, connect(b) as cb:  # RejectPolicy: the kit's known_hosts only
        assert run(ca, "hostname")[1].strip() == a.name
        assert run(ca, "ps -o comm= -p 1")[1].strip() == "systemd"  # PID 1 is systemd
        assert run(ca, "systemctl is-system-running")[1].strip() == "running"
        assert run(ca, f"echo hi | sudo -n tee /srv/{marker} >/dev/null")[0] == 0
        assert run(cb, f"test -e /srv/{marker}")[0] == 1
        assert run(ca, "ip -4 -o addr show dev host0")[1].split()[3] == f"{a.address}/30"
        assert run(ca, "ip route show default")[1].strip() == ""  # no way off the /30
    assert a.path(f"/srv/{marker}").read_text() == "hi\n"
    assert not b.path(f"/srv/{marker}").exists()
    lower = a.root / "fs"
    assert os.path.ismount(lower)
    # the cached root under every host's overlay never changes
    from tests.hosts import rootfs

    assert not (rootfs.root_path(release) / "srv" / marker).exists()
    with pytest.raises(HostKitError, match="tmpfs"):
        a.path("/tmp/x")  # /tmp is a tmpfs inside: a test must not look at the overlay's


def test_real_systemd_host_reboots_with_its_files_and_leaves_nothing(
    make_hosts: HostFactory,
) -> None:
    [h] = make_hosts(1, release="bookworm")
    kit = make_hosts.kit
    h.sh(
        "printf '[Service]\\nExecStart=/usr/bin/sleep infinity\\n[Install]\\nWantedBy=multi-user.target\\n'"
        " > /etc/systemd/system/napper.service && systemctl enable --now napper -q"
    )
    first_leader, first_supervisor = h.pid, h.supervisor
    boots = h.sh("journalctl --list-boots --no-pager | wc -l").stdout.strip()
    kit.reboot(h)
    assert h.pid != first_leader and h.supervisor != first_supervisor
    assert not alive(first_supervisor) and not alive(first_leader)
    assert h.sh("systemctl is-active napper").stdout.strip() == "active"  # enabled: back
    assert int(h.sh("journalctl --list-boots --no-pager | wc -l").stdout) == int(boots) + 1
    with connect(h) as c:  # the same host key after the reboot
        assert run(c, "true")[0] == 0
    inside = nspawn.cgroup_pids(h.machine)
    assert h.pid in inside and len(inside) > 3
    kit.stop()
    assert not [p for p in (h.pid, h.supervisor, *inside) if alive(p)]
    assert not [d for d in nspawn.cgroup_dirs(h.machine) if d.exists()]
    assert not Path(f"/sys/class/net/{h.veth}").exists()
    assert not os.path.ismount(h.root / "fs")
    assert not (nspawn.PROPAGATE / h.machine).exists()
    assert (
        kit.subnet
        not in subprocess.run(
            ["ip", "route", "show", "table", "all"], capture_output=True, text=True, check=True
        ).stdout
    )
    kit.stop()  # idempotent


def test_real_systemd_skips_name_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import hostkit
    from tests.hosts import rootfs

    monkeypatch.setattr(rootfs, "is_ready", lambda release: False)
    monkeypatch.setattr(rootfs, "apt_mirror", lambda *a: None)
    if hostkit.netns_unavailable_reason() or nspawn.unavailable_reason():
        assert hostkit.nspawn_unavailable_reason("bookworm")
    else:
        assert hostkit.nspawn_unavailable_reason("bookworm") == (
            "no Debian mirror in /etc/apt/sources.list{,.d}"
        )
