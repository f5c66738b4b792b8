"""Processes and roles in the env file: what each host runs, the primary host, --roles, the
companion units, and bad input named by file, line and key before any host."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks import config
from tasks.config import roles
from tasks.core.errors import ConfigError
from tasks.host import units

FLEET = (
    "APP_NAME=shop\n"
    "ROLE_WEB=deploy@web1,deploy@web2\n"
    "ROLE_WORKER=deploy@jobs1,deploy@web2\n"
    "RUNS_WORKER=worker,beat\n"
    "PROCESS_WORKER=celery -A proj worker --loglevel=info\n"
    "PROCESS_BEAT=celery -A proj beat\n"
    "PROCESS_RQ_WORKER=rq worker\n"
    "STOP_TIMEOUT=600\n"
)


def build(tmp_path: Path, text: str) -> config.Settings:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text(text)
    return config.build("staging", tmp_path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, text)
    return str(caught.value)


def test_roles_say_what_each_host_runs(tmp_path: Path) -> None:
    settings = build(tmp_path, FLEET)
    assert settings.processes == {
        "worker": "celery -A proj worker --loglevel=info",
        "beat": "celery -A proj beat",
        "rq-worker": "rq worker",
    }
    assert settings.hosts == ("deploy@web1", "deploy@web2", "deploy@jobs1")  # from the roles
    assert roles.processes_of(settings, "web1") == ("web",)
    assert roles.processes_of(settings, "deploy@web2") == ("web", "worker", "beat")
    assert roles.companions_of(settings, "jobs1") == ("worker", "beat")
    assert not roles.serves_web(settings, "jobs1")
    assert roles.processes_of(settings, "stranger") == ("web",)  # -H host in no role
    assert units.unit_name(settings, "worker") == "shop-worker.service"
    assert units.unit_name(settings, "web") == "shop.service"


def test_without_roles_every_host_runs_everything(tmp_path: Path) -> None:
    settings = build(tmp_path, "APP_NAME=shop\nHOSTS=a,b\nPROCESS_WORKER=celery worker\n")
    assert roles.processes_of(settings, "b") == ("web", "worker")
    assert roles.primary(settings, ["a", "b"]) == "a"


def test_the_primary_is_the_first_web_host_or_the_one_named(tmp_path: Path) -> None:
    settings = build(tmp_path, "APP_NAME=shop\nROLE_WORKER=w1\nROLE_WEB=web1,web2\n"
                     "PROCESS_WORKER=x\n")  # fmt: skip
    assert roles.primary(settings, ["w1", "web1", "web2"]) == "web1"
    assert roles.primary(settings, ["w1"]) == "w1"  # --roles worker: the first of them
    named = build(tmp_path, FLEET + "PRIMARY_HOST=deploy@web2\n")
    assert roles.primary(named, ["web1", "web2", "jobs1"]) == "web2"


def test_select_keeps_the_hosts_of_the_roles(tmp_path: Path) -> None:
    settings = build(tmp_path, FLEET)
    hosts = list(settings.hosts)
    assert roles.select(settings, hosts, "") == hosts
    assert roles.select(settings, hosts, "worker") == ["deploy@web2", "deploy@jobs1"]
    with pytest.raises(ConfigError, match=r"unknown role 'db'.*roles: web, worker"):
        roles.select(settings, hosts, "db")


@pytest.mark.parametrize(
    ("extra", "line", "key", "message"),
    [
        ("ROLE_DB=\n", 9, "ROLE_DB", "role 'db' has no hosts"),
        ("RUNS_WEB=web,celery\n", 9, "RUNS_WEB", "unknown process 'celery'"),
        ("RUNS_CACHE=web\n", 9, "RUNS_CACHE", "no role 'cache'"),
        ("ROLE_JOBS=deploy@jobs2\n", 9, "ROLE_JOBS", "runs nothing: set RUNS_JOBS"),
        ("PRIMARY_HOST=deploy@db1\n", 9, "PRIMARY_HOST", "deploy@db1 is not one of the hosts"),
        ("PROCESS_WEB=python serve.py\n", 9, "PROCESS_WEB", "'web' is gunicorn's process"),
        ("PROCESS_EMPTY=\n", 9, "PROCESS_EMPTY", "expected the command"),
        ("ROLE_X=bad host!\n", 9, "ROLE_X", "expected [user@]host[:port]"),
    ],
)
def test_bad_roles_and_processes_name_file_line_and_key(
    tmp_path: Path, extra: str, line: int, key: str, message: str
) -> None:
    text = error(tmp_path, FLEET + extra)
    assert f"staging.env:{line}: {key}: " in text and message in text


def test_a_role_host_missing_from_hosts_is_named(tmp_path: Path) -> None:
    text = error(tmp_path, "APP_NAME=shop\nHOSTS=web1\nROLE_WEB=web1,web9\n")
    assert "staging.env:3: ROLE_WEB: web9 is not one of HOSTS (web1)" in text


@pytest.mark.parametrize("value", ["../etc", "/abs", ".venv", "a/../b", "x;y", "REVISION"])
def test_linked_paths_stay_inside_the_release(tmp_path: Path, value: str) -> None:
    text = error(tmp_path, f"APP_NAME=shop\nLINKED_DIRS=media,{value}\n")
    assert "staging.env:2: LINKED_DIRS: " in text


def test_a_companion_unit_runs_in_current_with_the_venv_secrets_and_stop_timeout(
    tmp_path: Path,
) -> None:
    settings = build(tmp_path, FLEET + 'PROCESS_ODD=echo 50% $HOME "q"\n')
    unit = units.render_process_unit(settings, "worker", "shop", "shop")
    assert "WorkingDirectory=/srv/shop/current\n" in unit
    assert "EnvironmentFile=-/etc/shop/env\n" in unit
    assert "Environment=VIRTUAL_ENV=/srv/shop/current/.venv " in unit
    assert "PATH=/srv/shop/current/.venv/bin:" in unit
    assert "User=shop\n" in unit and "KillMode=mixed\n" in unit
    assert "TimeoutStopSec=600\n" in unit
    assert 'ExecStart=/bin/bash -c "exec celery -A proj worker --loglevel=info"\n' in unit
    odd = units.render_process_unit(settings, "odd", "shop", "shop")
    assert 'ExecStart=/bin/bash -c "exec echo 50%% $$HOME \\"q\\""\n' in odd


def test_role_hosts_match_hosts_whatever_the_user_or_port_22(tmp_path: Path) -> None:
    settings = build(tmp_path, "APP_NAME=shop\nHOSTS=web1,web2:2222\nROLE_WEB=deploy@web1:22\n"
                     "ROLE_WORKER=web2:2222\nPROCESS_WORKER=x\nPRIMARY_HOST=ann@web2:2222\n")  # fmt: skip
    assert roles.processes_of(settings, "web1") == ("web",)
    assert roles.companions_of(settings, "web2:2222") == ("worker",)
    assert roles.primary(settings, ["web1", "web2:2222"]) == "web2:2222"
