"""The naive baseline of bench/deploy.py: the classic Fabric deploy, host after host.

What many hand-written fabfiles do (scp, then ssh), with nothing of fabdeploy: for each host in
turn, `put` a tar.gz of the app and one of a wheelhouse, unpack them into a new release dir,
create a venv there (``python3 -m venv``), ``pip install --no-index --find-links`` into it,
point ``current`` at the release, (re)write a simple systemd unit and
``sudo systemctl restart`` it. Every run reinstalls everything (there is no notion of an
unchanged revision) and the restart drops the requests that arrive while gunicorn is down.

The test hosts have no network: the wheelhouse is built once locally beforehand
(``pip wheel -r requirements.txt -w DIR``) and passed as ``--wheelhouse``. Host keys are
verified against ``--known-hosts`` (paramiko's RejectPolicy: an unknown host is refused).

    python bench/naive_fabfile.py --hosts deploy@10.0.0.2,deploy@10.0.0.6 --key KEY \\
        --known-hosts FILE --app-dir APP --wheelhouse WHEELS --secrets app/secrets.env

prints one line per host and, last, ``NAIVE_RESULT {json}`` with seconds and SSH sessions per
host. Exit status 1 when a host failed (the deploy stops there, like a fabfile would).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import paramiko
from fabric import Connection

#: Where the naive deploy lives on a host (the deploy user's home: no setup step needed).
ROOT = "naive"
UNIT = "naive"
EXCLUDES = ("__pycache__", ".pytest_cache", ".fabdeploy", "secrets.env", ".venv")

UNIT_TEXT = """[Unit]
Description=naive baseline of the fabdeploy benchmark (gunicorn)
After=network.target

[Service]
Type=simple
User={user}
WorkingDirectory={home}/{root}/current
EnvironmentFile={home}/{root}/.env
ExecStart={home}/{root}/current/venv/bin/gunicorn --bind 0.0.0.0:{port} --workers {workers} \
--pid {home}/{root}/gunicorn.pid app:app

[Install]
WantedBy=multi-user.target
"""


def tar_gz(source: Path, dest: Path) -> Path:
    """``tar czf dest -C source .`` leaving out caches and the secrets file."""

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        return None if any(p in EXCLUDES for p in parts) else info

    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted(source.iterdir()):
            tar.add(path, arcname=path.name, filter=keep)
    return dest


class NaiveHost:
    """One Fabric connection to one host, counting the SSH sessions it starts."""

    def __init__(self, target: str, key: str, known_hosts: str, timeout: float) -> None:
        user, _, host = target.rpartition("@")
        self.name = host
        self.sessions = 0
        self.timeout = timeout
        self.conn = Connection(
            host,
            user=user or None,
            connect_timeout=10,
            connect_kwargs={"key_filename": key, "look_for_keys": False, "allow_agent": False},
        )
        # Fabric sets AutoAddPolicy: verify host keys instead, against the kit's known_hosts.
        self.conn.client.get_host_keys().load(known_hosts)
        self.conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())

    def run(self, command: str) -> str:
        self.sessions += 1
        return self.conn.run(command, hide=True, in_stream=False, timeout=self.timeout).stdout

    def put(self, local: Path | io.StringIO, remote: str) -> None:
        if self.conn._sftp is None:
            self.sessions += 1  # the SFTP channel, opened once per connection
        self.conn.put(local, remote)


def deploy_host(host: NaiveHost, app_tgz: Path, wheels_tgz: Path, secrets: Path, args) -> None:  # type: ignore[no-untyped-def]
    """The classic steps on one host."""
    release = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"{time.time() % 1:.3f}"[1:]
    home = host.run("echo $HOME").strip()
    rel = f"{home}/{ROOT}/releases/{release}"
    host.run(f"mkdir -p {rel}/wheelhouse")
    host.put(app_tgz, f"{rel}/app.tar.gz")
    host.put(wheels_tgz, f"{rel}/wheelhouse.tar.gz")
    host.put(secrets, f"{home}/{ROOT}/.env")
    host.run(
        f"cd {rel} && tar xzf app.tar.gz && tar xzf wheelhouse.tar.gz -C wheelhouse"
        " && rm app.tar.gz wheelhouse.tar.gz && chmod 600 ../../.env"
    )
    host.run(f"python3 -m venv {rel}/venv")
    host.run(
        f"{rel}/venv/bin/pip install -q --disable-pip-version-check --no-index "
        f"--find-links {rel}/wheelhouse -r {rel}/requirements.txt"
    )
    host.run(f"ln -sfn {rel} {home}/{ROOT}/current")
    unit = UNIT_TEXT.format(
        user=host.conn.user, home=home, root=ROOT, port=args.port, workers=args.workers
    )
    host.put(io.StringIO(unit), f"{home}/{ROOT}/{UNIT}.service")
    host.run(
        f"sudo -n cp {home}/{ROOT}/{UNIT}.service /etc/systemd/system/{UNIT}.service"
        f" && sudo -n systemctl daemon-reload && sudo -n systemctl enable -q {UNIT}"
    )
    host.run(f"sudo -n systemctl restart {UNIT}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", required=True, help="user@host,user@host,...")
    parser.add_argument("--key", required=True, help="SSH private key")
    parser.add_argument("--known-hosts", required=True, help="known_hosts to verify keys with")
    parser.add_argument("--app-dir", required=True, type=Path)
    parser.add_argument("--wheelhouse", required=True, type=Path, help="built by `pip wheel`")
    parser.add_argument("--secrets", required=True, type=Path, help="env file for the unit")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per command")
    args = parser.parse_args(argv)

    started = time.monotonic()
    results: dict[str, dict[str, object]] = {}
    status = 0
    with tempfile.TemporaryDirectory(prefix="naive-") as tmp:
        app_tgz = tar_gz(args.app_dir, Path(tmp) / "app.tar.gz")  # `local("tar czf ...")`
        wheels_tgz = tar_gz(args.wheelhouse, Path(tmp) / "wheelhouse.tar.gz")
        for target in (t.strip() for t in args.hosts.split(",") if t.strip()):
            host = NaiveHost(target, args.key, args.known_hosts, args.timeout)
            t0 = time.monotonic()
            try:
                deploy_host(host, app_tgz, wheels_tgz, args.secrets, args)
            except Exception as exc:  # a fabfile stops at the first failing host
                print(f"[{host.name}] FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
                results[host.name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                status = 1
                break
            finally:
                host.conn.close()
            seconds = time.monotonic() - t0
            results[host.name] = {"ok": True, "seconds": seconds, "sessions": host.sessions}
            print(f"[{host.name}] deployed in {seconds:.1f}s ({host.sessions} SSH sessions)")
    total = time.monotonic() - started
    print(f"naive deploy to {len(results)} host(s) in {total:.1f}s")
    print("NAIVE_RESULT " + json.dumps({"seconds": total, "hosts": results}))
    return status


if __name__ == "__main__":
    sys.exit(main())
