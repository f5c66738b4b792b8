"""Env files -> Settings: every bad input names file, line and key, before any SSH."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tasks import config
from tasks.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))


def project(tmp_path: Path, text: str, name: str = "staging") -> Path:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / f"{name}.env").write_text(text)
    return tmp_path


def test_reads_typed_values_and_defaults(tmp_path: Path) -> None:
    root = project(
        tmp_path, "APP_NAME=shop\nHOSTS=a@web1, web2:2222\nWORKERS=4\nTRUST_NEW_HOSTS=yes\n"
    )
    settings = config.build("staging", root)
    assert settings.hosts == ("a@web1", "web2:2222")
    assert settings.workers == 4 and settings.trust_new_hosts is True
    assert settings.deploy_root == "/srv/shop"
    assert settings.keep_releases == 5 and settings.port == 8000
    assert settings.source == root / "config" / "staging.env"


def test_values_are_not_interpolated_from_the_shell(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LEAK", "from-my-shell")
    root = project(tmp_path, "APP_NAME=shop\nTEST_COMMAND=echo ${LEAK}\n")
    assert config.build("staging", root).test_command == "echo ${LEAK}"


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("APP_NAME=shop\nKEEP_RELEASES=abc\n", 2, "KEEP_RELEASES: expected a whole number >= 2"),
        (
            "APP_NAME=shop\n\nKEEP_RELAESES=3\n",
            3,
            "KEEP_RELAESES: unknown key (did you mean KEEP_RELEASES?)",
        ),
        (
            "APP_NAME=shop\nKEEP_RELEASES=1\n",
            2,
            "KEEP_RELEASES: expected a whole number >= 2, got 1",
        ),
        ("APP_NAME=Shop Now\n", 1, "APP_NAME: expected a lowercase name"),
        ("APP_NAME=shop\nDEPLOY_ROOT=relative/dir\n", 2, "DEPLOY_ROOT: expected an absolute path"),
        (
            "APP_NAME=shop\nDEPLOY_ROOT=/\n",
            2,
            "DEPLOY_ROOT: expected an absolute path other than '/'",
        ),
        ("APP_NAME=shop\nBIND=8000\n", 2, "BIND: expected HOST:PORT"),
        ("APP_NAME=shop\nTRUST_NEW_HOSTS=maybe\n", 2, "TRUST_NEW_HOSTS: expected yes or no"),
        ("APP_NAME=shop\nHOSTS=web 1\n", 2, "HOSTS: expected [user@]host[:port]"),
        ("APP_NAME=shop\nSWITCH_BATCH=0\n", 2, "SWITCH_BATCH: expected a count"),
        ("APP_NAME=shop\nWORKERS=2\nWORKERS=3\n", 3, "WORKERS: set twice (first on line 2)"),
        ("APP_NAME=shop\nthis is not a setting\n", 2, "cannot parse 'this is not a setting'"),
    ],
)
def test_bad_values_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, expected: str
) -> None:
    root = project(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        config.build("staging", root)
    message = str(caught.value)
    assert f"{root / 'config' / 'staging.env'}:{line}: " in message
    assert expected in message


def test_missing_required_key_names_file_and_key(tmp_path: Path) -> None:
    root = project(tmp_path, "HOSTS=web1\n")
    with pytest.raises(ConfigError, match=r"staging\.env: APP_NAME: required key is missing"):
        config.build("staging", root)


def test_missing_environment_lists_the_known_ones(tmp_path: Path) -> None:
    root = project(tmp_path, "APP_NAME=shop\n")
    with pytest.raises(ConfigError, match=r"production\.env: environment file not found .*staging"):
        config.build("production", root)


def test_missing_or_bad_secrets_file_is_named(tmp_path: Path) -> None:
    root = project(tmp_path, "APP_NAME=shop\nSECRETS_FILE=secrets/app.env\n")
    with pytest.raises(
        ConfigError, match=r"secrets/app\.env: secrets file \(SECRETS_FILE\) not found"
    ):
        config.build("staging", root)
    (root / "secrets").mkdir()
    (root / "secrets" / "app.env").write_text("TOKEN=s3cr3t-value\n9BAD=x\n")
    with pytest.raises(ConfigError, match=r"app\.env:2: 9BAD: not a valid variable name"):
        config.build("staging", root)


def test_secret_values_never_show_in_repr(tmp_path: Path) -> None:
    root = project(tmp_path, "APP_NAME=shop\nSECRETS_FILE=app.env\n")
    (root / "app.env").write_text("TOKEN=s3cr3t-value\n")
    settings = config.build("staging", root)
    assert "s3cr3t-value" not in repr(settings) + repr(settings.secrets)
    assert settings.secrets.names() == ["TOKEN"]
    assert 'TOKEN="s3cr3t-value"' in settings.secrets.render()


def test_environments_are_the_env_files_but_example(tmp_path: Path) -> None:
    for name in ("staging", "production", "example"):
        project(tmp_path, "APP_NAME=x\n", name)
    assert config.environments(tmp_path / "config") == ["production", "staging"]


def test_example_env_documents_exactly_the_keys() -> None:
    text = (REPO / "config" / "example.env").read_text()
    documented = [line.split("=", 1)[0] for line in text.splitlines() if line and line[0] != "#"]
    assert documented == [key.name for key in config.KEYS]
    assert text == config.example_env(), "regenerate config/example.env (see its header)"


class Listener:
    """A TCP listener that counts connections, standing in for an SSH server."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "APP_NAME=shop\nKEEP_RELEASES=abc\n",
            "staging.env:2: KEEP_RELEASES: expected a whole number",
        ),
        ("APP_NAME=shop\nBOGUS=1\n", "staging.env:2: BOGUS: unknown key"),
        ("HOSTS=x\n", "staging.env: APP_NAME: required key is missing"),
    ],
)
def test_fab_reports_config_errors_without_traceback_or_connection(
    tmp_path: Path, text: str, expected: str
) -> None:
    root = project(tmp_path, text)
    (root / "fabfile.py").write_text("from tasks import ns\n")
    listener = Listener()
    try:
        host = f"127.0.0.1:{listener.port}"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for argv in (["staging", "status"], ["-H", host, "staging", "deploy"]):
            started = time.monotonic()
            proc = subprocess.run(
                [FAB, *argv], cwd=root, env=env, capture_output=True, text=True, timeout=60
            )
            assert proc.returncode == 2, proc.stderr
            assert expected in proc.stderr
            assert "Traceback" not in proc.stderr + proc.stdout
            assert time.monotonic() - started < 30
        time.sleep(0.3)
        assert listener.accepted == 0
    finally:
        listener.close()


def test_missing_environment_file_from_fab(tmp_path: Path) -> None:
    root = project(tmp_path, "APP_NAME=shop\n")
    (root / "fabfile.py").write_text("from tasks import ns\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [FAB, "-H", "127.0.0.1:1", "status"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "default.env: environment file not found (environments here: staging)" in proc.stderr
    assert "Traceback" not in proc.stderr
