"""The SSH layer without a network: quoting, prefixed whole-line output, host key policy."""

from __future__ import annotations

import io
import subprocess
import threading
import time
from pathlib import Path

import paramiko
import pytest
from fabric import Config
from invoke import Context
from invoke.runners import Result

from tasks import config
from tasks.core import errors, shell
from tasks.core import output as core_output
from tasks.core.errors import HostError
from tasks.ssh import host as ssh_host
from tasks.ssh import hostkeys, session

NASTY = [
    "two words",
    'it\'s "quoted"',
    "a; touch /tmp/fabdeploy-pwned",
    "$(touch /tmp/fabdeploy-pwned) `id`",
    "line one\nline two",
    "${HOME} \\ back",
]


def settings(tmp_path: Path, extra: str = "") -> config.Settings:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text(f"APP_NAME=shop\n{extra}")
    return config.build("staging", tmp_path)


class LocalConnection:
    """Stands in for a Fabric Connection: runs the command with the local bash."""

    host = "web1"
    port = 22
    user = "deploy"
    is_connected = True

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, command: str, **kwargs: object) -> Result:
        self.commands.append(command)
        given = kwargs.get("in_stream")  # Host.run's stdin, or False
        proc = subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            input=given.read() if given else "",  # type: ignore[attr-defined]
        )
        for stream, text in (
            (kwargs.get("out_stream"), proc.stdout),
            (kwargs.get("err_stream"), proc.stderr),
        ):
            if stream is not None and text:
                stream.write(text)  # type: ignore[attr-defined]
        return Result(
            stdout=proc.stdout, stderr=proc.stderr, exited=proc.returncode, command=command
        )


def local_host(tmp_path: Path, out: io.StringIO, mask: tuple[str, ...] = ()) -> ssh_host.Host:
    return ssh_host.Host(LocalConnection(), settings(tmp_path), core_output.Output(out, out, mask))  # type: ignore[arg-type]


@pytest.mark.parametrize("value", NASTY)
def test_script_env_values_arrive_unchanged_and_run_nothing(tmp_path: Path, value: str) -> None:
    marker = Path("/tmp/fabdeploy-pwned")
    marker.unlink(missing_ok=True)
    host = local_host(tmp_path, io.StringIO())
    result = host.script('printf %s "$VALUE"', env={"VALUE": value}, hide=True)
    assert result.stdout == value
    assert not marker.exists()


def test_quote_survives_sudo_style_nesting(tmp_path: Path) -> None:
    host = local_host(tmp_path, io.StringIO())
    inner = f"printf %s {shell.quote(NASTY[3])}"
    assert host.run(f"bash -c {shell.quote(inner)}", hide=True).stdout == NASTY[3]


def test_output_lines_carry_the_host_and_mask_secrets(tmp_path: Path) -> None:
    out = io.StringIO()
    host = local_host(tmp_path, out, mask=("s3cr3t",))
    host.script("echo one; printf 'two s3cr3t'; echo ' three'; printf 'tail'")
    assert out.getvalue() == "[web1] one\n[web1] two *** three\n[web1] tail\n"


def test_failure_names_host_command_and_exit_code(tmp_path: Path) -> None:
    host = local_host(tmp_path, io.StringIO())
    with pytest.raises(HostError) as caught:
        host.script("echo broken >&2; exit 3", label="unpack release", hide=True)
    assert str(caught.value) == "fabdeploy: [web1] unpack release failed (exit 3): broken"
    assert caught.value.code == 1


def test_parallel_writers_never_interleave_mid_line() -> None:
    out = io.StringIO()
    output = core_output.Output(out, out)

    def chatter(name: str) -> None:
        writer = core_output.LineWriter(output, name)
        for i in range(300):
            for piece in (f"{name} line {i} ", "has ", "three parts\n"):
                writer.write(piece)
        writer.close()

    threads = [threading.Thread(target=chatter, args=(f"h{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1200
    for line in lines:
        host = line[1:3]
        assert line.startswith(f"[{host}] {host} line ") and line.endswith(" has three parts")


@pytest.mark.parametrize("value", [*NASTY, "", "tok-5d1c9e0a7b3f11"])
def test_private_values_reach_the_script_on_stdin_never_in_its_command(
    tmp_path: Path, value: str
) -> None:
    host = local_host(tmp_path, io.StringIO())
    body = 'printf "%s|%s|%s" "$PUBLIC" "$SECRET" "$OTHER"; cat'  # stdin is at its end
    result = host.script(
        body, env={"PUBLIC": "p"}, private={"SECRET": value, "OTHER": "x"}, hide=True
    )
    assert result.stdout == f"p|{value}|x"
    [command] = host.conn.commands  # type: ignore[attr-defined]
    assert "PUBLIC=p" in command and (not value or value not in command)
    with pytest.raises(ValueError, match="NUL"):
        host.script("true", private={"SECRET": "a\0b"})


def test_unknown_host_key_is_refused_with_fingerprint_and_the_way_to_trust(tmp_path: Path) -> None:
    key = paramiko.RSAKey.generate(1024)
    policy = hostkeys.RefuseUnknownHost(["/x/known_hosts"], settings(tmp_path))
    with pytest.raises(hostkeys.UnknownHostKey) as caught:
        policy.missing_host_key(None, "web1", key)
    message = str(caught.value)
    assert hostkeys.fingerprint(key) in message and message.count("SHA256:") == 1
    assert "fab staging trust" in message and "TRUST_NEW_HOSTS=yes" in message
    assert "/x/known_hosts" in message


def test_trusting_records_the_key_in_known_hosts(tmp_path: Path) -> None:
    key = paramiko.RSAKey.generate(1024)
    target = tmp_path / "ssh" / "known_hosts"
    client = paramiko.SSHClient()
    said: list[str] = []
    hostkeys.TrustNewHost(target, said.append).missing_host_key(client, "[web1]:2222", key)
    assert target.read_text() == f"[web1]:2222 ssh-rsa {key.get_base64()}\n"
    assert hostkeys.fingerprint(key) in said[0]
    loaded = paramiko.HostKeys(str(target))
    assert loaded.lookup("[web1]:2222")["ssh-rsa"] == key


def test_default_policy_refuses_and_loads_configured_known_hosts(tmp_path: Path) -> None:
    known = tmp_path / "known"
    known.write_text("")
    s = settings(tmp_path, f"KNOWN_HOSTS={known}\n")
    conn = ssh_host.connection(Context(Config()), "web1", s)
    hostkeys.apply_host_key_policy(conn, s, core_output.Output(io.StringIO()))
    policy = conn.client._policy
    assert isinstance(policy, hostkeys.RefuseUnknownHost)
    assert str(known) in policy.files
    s2 = settings(tmp_path, f"KNOWN_HOSTS={known}\nTRUST_NEW_HOSTS=yes\n")
    conn2 = ssh_host.connection(Context(Config()), "web1", s2)
    hostkeys.apply_host_key_policy(conn2, s2, core_output.Output(io.StringIO()))
    assert isinstance(conn2.client._policy, hostkeys.TrustNewHost)


def test_every_proxyjump_hop_gets_the_policy_of_the_host(tmp_path: Path) -> None:
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(
        "Host web1\n  ProxyJump outer,inner\n"
        f"Host inner\n  HostName 10.0.0.9\n  Port 2222\n  UserKnownHostsFile {tmp_path}/inner\n"
    )
    (tmp_path / "inner").write_text("")
    s = settings(tmp_path, "CONNECT_TIMEOUT=7\n")
    conn = ssh_host.connection(Context(Config(runtime_ssh_path=str(ssh_config))), "web1", s)
    hops = hostkeys.hops(conn)
    # Fabric 3.2 nests `ProxyJump outer,inner` as web1 <- outer <- inner (it dials inner first)
    assert [hop.original_host for hop in hops] == ["outer", "inner"]
    assert [hop.connect_timeout for hop in hops] == [7, 7]
    hostkeys.apply_host_key_policy(conn, s, core_output.Output(io.StringIO()))
    policies = [hop.client._policy for hop in hops]
    assert all(isinstance(policy, hostkeys.RefuseUnknownHost) for policy in policies)
    assert [policy.jump for policy in policies] == [
        "jump host outer",
        "jump host inner (10.0.0.9:2222)",
    ]
    assert f"{tmp_path}/inner" in policies[1].files
    assert f"{tmp_path}/inner" not in policies[0].files  # each hop its own ssh_config's files
    assert hostkeys.hop_of(conn, "[10.0.0.9]:2222") is hops[1]
    assert hostkeys.hop_of(conn, "web1") is None
    key = paramiko.RSAKey.generate(1024)
    with pytest.raises(
        hostkeys.UnknownHostKey, match=r"^jump host inner \(10.0.0.9:2222\): unknown host key"
    ):
        policies[1].missing_host_key(None, "[10.0.0.9]:2222", key)
    hostkeys.apply_host_key_policy(conn, s, core_output.Output(io.StringIO()), trust=True)
    assert all(isinstance(hop.client._policy, hostkeys.TrustNewHost) for hop in hops)

    # a hop with a ProxyJump of its own (what docs/security.md suggests for several hops)
    ssh_config.write_text("Host web2\n  ProxyJump inner\nHost inner\n  ProxyJump outer\n")
    conn = ssh_host.connection(Context(Config(runtime_ssh_path=str(ssh_config))), "web2", s)
    assert [hop.original_host for hop in hostkeys.hops(conn)] == ["inner", "outer"]


def test_connection_applies_ssh_settings_but_the_host_string_wins(tmp_path: Path) -> None:
    s = settings(tmp_path, "SSH_USER=deployer\nSSH_PORT=2200\nSSH_KEY=keys/id\n")
    conn = ssh_host.connection(Context(Config()), "web1", s)
    assert (conn.user, conn.port) == ("deployer", 2200)
    assert str(tmp_path / "keys" / "id") in conn.connect_kwargs["key_filename"]
    explicit = ssh_host.connection(Context(Config()), "root@web2:22", s)
    assert (explicit.user, explicit.port) == ("root", 22)


def test_no_hosts_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(
        errors.FabdeployError, match=r"no hosts: set HOSTS in .*staging\.env or pass -H"
    ):
        session.target_hosts(Context(), settings(tmp_path))


@pytest.mark.parametrize(
    ("given", "expected"),
    [("deploy@web1:2222", "deploy@web1:2222"), ("web1", "web1"), ("ops@web1", "ops@web1")],
)
def test_dash_h_host_string_keeps_only_what_was_given(given: str, expected: str) -> None:
    from fabric import Connection

    assert ssh_host.given_host(Connection(given, config=Config())) == expected


def test_masked_stream_masks_a_secret_in_pieces_and_holds_only_what_may_begin_one() -> None:
    out = io.StringIO()
    stream = core_output.MaskedStream(out, ["s3cret-token", "other"], hold=60)
    stream.write("key: s3c")
    assert out.getvalue() == "key: "  # "s3c" may begin the secret: held
    stream.write("ret-tok")
    stream.write("en, a s3cret-token again\r\n$ ")
    assert out.getvalue() == "key: ***, a *** again\r\n$ "
    stream.write("s3")
    stream.write("x")  # not the secret after all
    assert out.getvalue().endswith("$ s3x")
    stream.write("ot")  # may begin "other"
    stream.close()  # the command ended: what was held is written
    assert out.getvalue().endswith("$ s3xot")


def test_masked_stream_writes_a_held_start_after_a_while() -> None:
    out = io.StringIO()
    stream = core_output.MaskedStream(out, ["s3cret-token"], hold=0.05)
    stream.write("prompt> s3")
    assert out.getvalue() == "prompt> "
    deadline = time.monotonic() + 5
    while out.getvalue() != "prompt> s3" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert out.getvalue() == "prompt> s3"  # an interactive prompt does not wait forever


def test_each_line_of_a_secret_over_several_lines_is_masked() -> None:
    pem = "-----BEGIN KEY-----\nMIIBVQIBADANBgkqhkiG9w0\n-----END KEY-----"
    out = io.StringIO()
    output = core_output.Output(out, out, mask=[pem, "ab"])
    writer = core_output.LineWriter(output, "web1")
    writer.write("key:\n-----BEGIN KEY-----\nMIIBVQ")  # cut anywhere, as output comes
    writer.write("IBADANBgkqhkiG9w0\n-----END KEY-----\n")
    assert "MIIBVQIBADANBgkqhkiG9w0" not in out.getvalue()
    assert out.getvalue() == "[web1] key:\n[web1] ***\n[web1] ***\n[web1] ***\n"
    assert output.mask == core_output.masked_values(output.mask)  # "ab": too short to mask
