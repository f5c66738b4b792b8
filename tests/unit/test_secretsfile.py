"""The secrets file format (`tasks.core.secretsfile`): what fabdeploy writes is what each reader
on the host reads, value for value, for values a shell or a parser could mangle."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from tasks import config
from tasks.core import secretsfile
from tasks.host import appenv, units

TRICKY = {
    "DOUBLE": 'say "hi"',
    "SINGLE": "it's",
    "BACKSLASH": "C:\\path\\ \\n \\\\ end\\",
    "DOLLAR": "$HOME ${HOME} $(touch /tmp/fabdeploy-pwned) `id`",
    "NEWLINE": 'line one\nline two\nFAKE="injected"',
    "CONTROL": 'cr\rFAKE2=1 crlf\r\nFAKE3=1 tab\t esc\x1b[31m del\x7f vt\x0b ff\x0c "\\\nFAKE4=1',
    "EQUALS": "a=b=c",
    "UNICODE": "café ☕ 日本",
    "EMPTY": "",
    "SPACES": "  padded  ",
    "HASH": "# not a comment",
}


def test_render_then_parse_gives_every_value_back() -> None:
    text = secretsfile.render(TRICKY)
    assert secretsfile.parse(text) == TRICKY
    assert config.Secrets(None, TRICKY).render() == text


def test_with_secrets_reads_what_fabdeploy_writes(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(secretsfile.render(TRICKY), encoding="utf-8")
    dump = f"{sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))'"
    proc = subprocess.run(
        [sys.executable, str(appenv.WITH_SECRETS), dump],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    seen = json.loads(proc.stdout)
    assert {key: seen.get(key) for key in TRICKY} == TRICKY
    assert not [key for key in seen if key.startswith("FAKE")]
    assert runpy.run_path(str(appenv.WITH_SECRETS))["parse"](secretsfile.render(TRICKY)) == TRICKY


def test_gunicorn_conf_reads_what_fabdeploy_writes(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\n")
    env_file = tmp_path / ".env"
    env_file.write_text(secretsfile.render(TRICKY), encoding="utf-8")
    text = units.render_gunicorn_conf(config.build("staging", tmp_path)).replace(
        "'/etc/shop/env'", repr(str(env_file))
    )
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(text)
    raw_env = runpy.run_path(str(conf))["raw_env"]
    assert dict(item.split("=", 1) for item in raw_env) == TRICKY


def test_gunicorn_conf_gives_settings_then_secrets_and_drops_what_the_files_no_longer_hold(
    tmp_path: Path, monkeypatch
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\n")
    (tmp_path / "settings").write_text(secretsfile.render({"DEBUG": "1", "SITE": "a"}))
    (tmp_path / "env").write_text(secretsfile.render({"SITE": "secret"}))
    text = units.render_gunicorn_conf(config.build("staging", tmp_path))
    for name in ("settings", "env"):
        text = text.replace(f"'/etc/shop/{name}'", repr(str(tmp_path / name)))
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(text)
    # a USR2 re-exec: the environment systemd gave the first master, and the names the files
    # gave the master before (OLD since removed from the settings)
    monkeypatch.setenv("OLD", "stale")
    monkeypatch.setenv("KEEP", "not the files'")
    monkeypatch.setenv("FABDEPLOY_FILES_ENV", "OLD,DEBUG")
    handed_on = {"OLD": "stale", "KEEP": "not the files'", "FABDEPLOY_FILES_ENV": "OLD,DEBUG"}
    loaded = runpy.run_path(str(conf))
    assert loaded["raw_env"] == ["DEBUG=1", "SITE=secret"]  # the secret wins a shared name
    assert "OLD" not in os.environ and os.environ["KEEP"] == "not the files'"
    assert "FABDEPLOY_FILES_ENV" not in os.environ  # the app never sees it
    server = SimpleNamespace(cfg=SimpleNamespace(env_orig=handed_on))
    was = os.umask(0o022)
    try:
        loaded["on_starting"](server)  # what this master's own re-exec hands on
    finally:
        os.umask(was)  # on_starting sets the unit's: not this test process's
    assert handed_on == {"KEEP": "not the files'", "FABDEPLOY_FILES_ENV": "DEBUG,SITE"}
