"""Env files -> Settings: every bad input names file, line and key, before any SSH."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
import typing
from pathlib import Path
from typing import Any

import pytest

from tasks import config
from tasks.config import parse
from tasks.config.key import Loaded, declared, field_values
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


def test_the_app_runs_as_a_user_named_after_it_unless_app_user_says_otherwise(
    tmp_path: Path,
) -> None:
    assert config.build("staging", project(tmp_path, "APP_NAME=shop\n")).app_user == "shop"
    chosen = config.build("staging", project(tmp_path, "APP_NAME=shop\nAPP_USER=deploy\n"))
    assert chosen.app_user == "deploy"  # e.g. the SSH user: the opt-in `fab check` warns about
    too_long = "a" * 33
    with pytest.raises(ConfigError, match=f"APP_NAME '{too_long}' is not a valid user name.*set APP_USER"):  # fmt: skip
        config.build("staging", project(tmp_path, f"APP_NAME={too_long}\n"))
    named = config.build("staging", project(tmp_path, f"APP_NAME={too_long}\nAPP_USER=shop\n"))
    assert named.app_user == "shop"
    for text in ("APP_NAME=root\n", "APP_NAME=shop\nAPP_USER=root\n"):
        with pytest.raises(ConfigError, match="the app may not run as root"):
            config.build("staging", project(tmp_path, text))


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


#: Every key an env file may set: the declared ones and one of each kind named by the user.
EVERY_KEY = [key.name for key in config.KEYS] + ["PROCESS_WORKER", "ROLE_WORKER", "RUNS_WORKER"]


@pytest.mark.parametrize("name", EVERY_KEY)
def test_every_key_refuses_a_newline_naming_file_line_and_key(tmp_path: Path, name: str) -> None:
    lines = ["" if name == "APP_NAME" else "APP_NAME=shop", f'{name}="x\\nExecStartPre=/bin/id"']
    root = project(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as caught:
        config.build("staging", root)
    assert str(caught.value).endswith(
        f"{root / 'config' / 'staging.env'}:2: {name}: a value may not hold a control "
        "character or line break (found '\\n' at character 2)"
    )


@pytest.mark.parametrize(
    ("written", "found"),
    [
        ("'one\ntwo'", "'\\n' at character 4"),  # a quoted value over two lines
        ('"a\\rb"', "'\\r' at character 2"),
        ('"a\\tb"', "'\\t' at character 2"),
        ('"a\\vb"', "'\\x0b' at character 2"),
        ("'a\x00b'", "'\\x00' at character 2"),
        ("'a\x1b[31mb'", "'\\x1b' at character 2"),
        ("'a\x7fb'", "'\\x7f' at character 2"),
        ("'a\x85b'", "'\\x85' at character 2"),
        ("'a\u2028b'", "'\\u2028' at character 2"),
    ],
)
def test_control_characters_are_refused_however_written(
    tmp_path: Path, written: str, found: str
) -> None:
    root = project(tmp_path, f"APP_NAME=shop\nTEST_COMMAND={written}\n")
    with pytest.raises(ConfigError, match=r"staging\.env:2: TEST_COMMAND: a value may not hold"):
        config.build("staging", root)
    with pytest.raises(ConfigError) as caught:
        config.build("staging", root)
    assert str(caught.value).endswith(f"(found {found})")


def test_secrets_keep_every_character_but_nul(tmp_path: Path) -> None:
    root = project(tmp_path, "APP_NAME=shop\nSECRETS_FILE=app.env\n")
    pem = "-----BEGIN KEY-----\nMIIB\tx\r\n-----END KEY-----"
    (root / "app.env").write_text(f'KEY="{pem.encode("unicode_escape").decode()}"\n')
    secrets = config.build("staging", root).secrets
    assert secrets.values() == [pem]  # read back exactly as systemd reads the rendered file
    (root / "app.env").write_text("TOKEN=s3cr3t\nOTHER='a\x00b'\n")
    with pytest.raises(ConfigError) as caught:
        config.build("staging", root)
    assert str(caught.value).endswith(
        f"{root / 'app.env'}:2: OTHER: a secret may not hold NUL (\\x00)"
    )


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


#: The fields `Settings` has besides its keys: `build` fills them by name.
NOT_KEYS = {
    "environment",
    "source",
    "project_dir",
    "cache_dir",
    "processes",
    "roles",
    "runs",
    "lines",
    "origins",
    "texts",
    "app_env",
    "revision",
    "secrets",
}
#: NEW_KEY's row in the summary table of docs/configuration.md.
NEW_KEY_ROW = "| [`NEW_KEY`](#new_key) | `7` | Times a new thing happens |"


def grown_declaration() -> type:
    """A dataclass declaring Settings' keys the way Settings does, with NEW_KEY added after
    SSH_PORT: what adding one `setting` line to Settings makes."""
    fields: list[tuple[str, Any, Any]] = [
        (name, Any, config.setting(k.name, k.parse, k.default, k.help, required=k.required))
        for name, k in declared(config.Settings).items()
    ]
    new = config.setting("NEW_KEY", parse.whole(1), "7", "Times a new thing happens")
    fields.insert(3, ("new_key", int, new))
    return dataclasses.make_dataclass("Grown", fields, frozen=True)


def grown_keys() -> tuple[config.Key, ...]:
    """The keys of `grown_declaration`, as `KEYS` is derived from Settings."""
    return tuple(declared(grown_declaration()).values())


def test_keys_are_the_settings_fields_named_after_them_in_order() -> None:
    fields = [f for f in dataclasses.fields(config.Settings) if f.init]
    assert [f.name for f in fields if f.name not in NOT_KEYS] == [
        key.name.lower() for key in config.KEYS
    ]
    assert list(config.KEYS_BY_NAME) == [key.name for key in config.KEYS]  # none twice
    assert config.HOOK_POINTS == ("after_upload", "before_switch", "after_switch", "failed")
    assert [key.name for key in config.KEYS if key.required] == ["APP_NAME"]
    for key in config.KEYS:
        assert key.help and "\n" not in key.help, key.name
        if not key.required:
            key.parse(key.default)  # every default is a valid value


def test_build_fills_every_key_field_from_its_own_key(tmp_path: Path) -> None:
    values = {key.name: f"<{key.name}>" for key in config.KEYS}  # all distinct: a swap shows
    filled = field_values(config.Settings, Loaded(tmp_path, values, {}))
    assert list(filled) == [key.name.lower() for key in config.KEYS]
    resolved = {
        "ssh_key": str(tmp_path / "<SSH_KEY>"),
        "known_hosts": str(tmp_path / "<KNOWN_HOSTS>"),
        "app_dir": (tmp_path / "<APP_DIR>").resolve(),
    }
    for name, value in filled.items():
        assert value == resolved.get(name, f"<{name.upper()}>"), name
    empty = {**values, "HOSTS": (), "DEPLOY_ROOT": "", "SSH_KEY": "", "KNOWN_HOSTS": ""}
    roles = {"web": ("a", "b"), "worker": ("b", "c")}
    filled = field_values(config.Settings, Loaded(tmp_path, empty, roles))
    assert filled["hosts"] == ("a", "b", "c") and filled["deploy_root"] == "/srv/<APP_NAME>"
    assert filled["ssh_key"] == filled["known_hosts"] == ""


def test_every_key_set_in_a_file_reaches_its_field(tmp_path: Path) -> None:
    example = (REPO / "config" / "example.env").read_text()
    everything = config.build("staging", project(tmp_path, example))
    assert sorted(everything.lines) == sorted(key.name for key in config.KEYS)
    least = config.build("least", project(tmp_path, "APP_NAME=myapp\n", "least"))
    same = dataclasses.replace(least, environment="staging", source=everything.source)
    assert everything == same  # example.env's values are the defaults
    hints = typing.get_type_hints(config.Settings)
    for name in declared(config.Settings):
        kind = typing.get_origin(hints[name]) or hints[name]
        assert isinstance(getattr(everything, name), kind), (name, hints[name])


def test_hooks_are_the_hook_keys_by_point(tmp_path: Path) -> None:
    root = project(tmp_path, "APP_NAME=shop\nHOOK_FAILED=notify me\nHOOK_AFTER_SWITCH=once: x\n")
    assert config.build("staging", root).hooks == {
        "after_upload": "",
        "before_switch": "",
        "after_switch": "once: x",
        "failed": "notify me",
    }


def test_a_key_added_to_the_declaration_is_read_and_documented(tmp_path: Path) -> None:
    grown, keys = grown_declaration(), grown_keys()
    names = [key.name for key in config.KEYS]
    assert [key.name for key in keys] == [*names[:3], "NEW_KEY", *names[3:]]
    values = {key.name: key.parse(key.default) for key in keys if not key.required}
    loaded = Loaded(tmp_path, {**values, "APP_NAME": "shop", "NEW_KEY": 9}, {})
    assert field_values(grown, loaded)["new_key"] == 9
    text = config.example_env(keys)
    assert "SSH_PORT=22\n\n# Times a new thing happens\nNEW_KEY=7\n" in text
    assert text != (REPO / "config" / "example.env").read_text()
    assert NEW_KEY_ROW in config.summary_table(keys).splitlines()


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
        (
            'APP_NAME=shop\nPROCESS_WORKER="celery -A app worker\\nExecStartPre=/bin/id"\n',
            "staging.env:2: PROCESS_WORKER: a value may not hold a control character",
        ),
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


def fab(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``fab argv...`` in the project ``root`` (a fabfile of fabdeploy's tasks made)."""
    (root / "fabfile.py").write_text("from tasks import ns\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [FAB, *argv], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )


def test_missing_environment_file_from_fab(tmp_path: Path) -> None:
    root = project(tmp_path, "APP_NAME=shop\n")
    proc = fab(root, "-H", "127.0.0.1:1", "status")
    assert proc.returncode == 2
    assert "default.env: environment file not found (environments here: staging)" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- config/common.env, the base of every environment, and ENV_<NAME>, the app's settings --


def test_common_env_is_the_base_each_environment_overrides_key_by_key(tmp_path: Path) -> None:
    root = project(tmp_path, "APP_NAME=shop\nWORKERS=3\nENV_SITE=base\nENV_DEBUG=0\n", "common")
    project(root, "HOSTS=web1\nWORKERS=5\nENV_DEBUG=1\n", "staging")
    settings = config.build("staging", root)
    assert settings.app_name == "shop" and settings.workers == 5  # the environment's wins
    assert settings.app_env == {"SITE": "base", "DEBUG": "1"}
    assert settings.where("APP_NAME") == f"{root / 'config' / 'common.env'}:1: APP_NAME"
    assert settings.where("WORKERS") == f"{root / 'config' / 'staging.env'}:2: WORKERS"
    assert settings.where("BIND") == f"{root / 'config' / 'staging.env'}: BIND"  # a default
    assert config.environments(root / "config") == ["staging"]  # common is no environment
    with pytest.raises(
        ConfigError, match=r"common\.env: the base every environment reads.*staging"
    ):
        config.build("common", root)


@pytest.mark.parametrize(
    ("common", "expected"),
    [
        ("APP_NAME=shop\n\nWORKERS=many\n", r"common\.env:3: WORKERS: expected a whole number"),
        (
            "APP_NAME=shop\nENV_X=\x1b[31m\n",
            r"common\.env:2: ENV_X: a value may not hold a control",
        ),
        (
            "APP_NAME=shop\nPROCESS_WORKER=\n",
            r"common\.env:2: PROCESS_WORKER: expected the command",
        ),
        ("WORKERS=2\n", r"staging\.env: APP_NAME: required key is missing"),
    ],
)
def test_errors_name_the_file_of_the_layer_the_value_came_from(
    tmp_path: Path, common: str, expected: str
) -> None:
    root = project(project(tmp_path, "HOSTS=web1\n"), common, "common")
    with pytest.raises(ConfigError, match=expected):
        config.build("staging", root)


def test_an_app_setting_is_never_also_a_secret_nor_a_variable_fabdeploy_sets(
    tmp_path: Path,
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.secrets.env").write_text("TOKEN=abc\nDEBUG=x\n")
    root = project(
        tmp_path, "APP_NAME=shop\nSECRETS_FILE=config/staging.secrets.env\nENV_DEBUG=1\n"
    )
    with pytest.raises(ConfigError, match=r"staging\.env:3: ENV_DEBUG: DEBUG is also a secret \(.*staging\.secrets\.env:2\)"):  # fmt: skip
        config.build("staging", root)
    for name in ("PATH", "PYTHONPATH", "GUNICORN_FD", "FABDEPLOY_CHDIR"):
        project(root, f"APP_NAME=shop\nENV_{name}=x\n")
        with pytest.raises(ConfigError, match=f"staging.env:2: ENV_{name}: {name} is set by fabdeploy"):  # fmt: skip
            config.build("staging", root)
    project(root, "APP_NAME=shop\nENV_lower_ok=a b $HOME\nENV_EMPTY=\n")
    assert config.build("staging", root).app_env == {"lower_ok": "a b $HOME", "EMPTY": ""}


def test_check_sources_shows_each_value_and_where_it_came_from(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.secrets.env").write_text("TOKEN=s3cr3t-value\n")
    root = project(tmp_path, "APP_NAME=shop\nWORKERS=3\nENV_SITE=https://shop.example\n", "common")
    project(root, "HOSTS=web1\nWORKERS=5\nSECRETS_FILE=config/staging.secrets.env\n", "staging")
    proc = fab(root, "staging", "check", "--sources")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()}
    assert rows["APP_NAME"] == ["shop", "config/common.env:1"]
    assert rows["WORKERS"] == ["5", "config/staging.env:2"]
    assert rows["BIND"] == ["127.0.0.1:8000", "default"]
    assert rows["ENV_SITE"] == ["https://shop.example", "config/common.env:3"]  # in clear
    assert rows["TOKEN"] == ["***", "config/staging.secrets.env:1"]
    assert "s3cr3t" not in proc.stdout + proc.stderr
    proc = fab(root, "-H", "a@web9,web8", "staging", "check", "--sources", "--json")
    assert proc.returncode == 0, proc.stderr
    found = {row["key"]: row for row in json.loads(proc.stdout)}  # printed once, not per host
    assert found["HOSTS"] == {"key": "HOSTS", "value": "a@web9,web8", "source": "-H"}
