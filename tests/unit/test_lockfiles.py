"""What the app's packages come from (tasks/build/lockfiles.py): the file detected in APP_DIR,
a uv lock exported by the real uv (examples/uvapp), a stale lock refused, the lock's hashes
checked against the wheels, and a poetry or pdm lock without its tool."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import pytest

from tasks import config
from tasks.build import lockfiles, testenv, workers
from tasks.core.errors import ConfigError, FabdeployError

UVAPP = Path(__file__).resolve().parents[2] / "examples" / "uvapp"
GUNICORN = "==".join(workers.GUNICORN)


def project(tmp_path: Path, files: dict[str, str], extra: str = "") -> config.Settings:
    app = tmp_path / "app"
    app.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (app / name).write_text(text)
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text(f"APP_NAME=shop\nAPP_DIR=app\n{extra}")
    return config.build("staging", tmp_path)


def uvapp(tmp_path: Path, extra: str = "") -> config.Settings:
    shutil.copytree(UVAPP, tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    return project(tmp_path, {}, extra)


def test_the_first_file_found_in_app_dir_in_order_or_the_one_named(tmp_path: Path) -> None:
    files = {"requirements.txt": "flask\n", "pdm.lock": "", "poetry.lock": "", "uv.lock": ""}
    conf = project(tmp_path, files)
    assert lockfiles.detect(conf) == "poetry.lock"  # uv.lock without pyproject.toml: not uv's
    assert lockfiles.detect(project(tmp_path, {"pyproject.toml": ""})) == "uv.lock"
    (conf.app_dir / "uv.lock").unlink()
    (conf.app_dir / "poetry.lock").unlink()
    assert lockfiles.detect(conf) == "pdm.lock"
    (conf.app_dir / "pdm.lock").unlink()
    assert lockfiles.detect(conf) == "requirements.txt"
    named = project(tmp_path, {"uv.lock": ""}, "REQUIREMENTS=requirements.txt\n")
    assert lockfiles.detect(named) == "requirements.txt"
    (conf.app_dir / "requirements.txt").unlink()
    (conf.app_dir / "uv.lock").unlink()
    with pytest.raises(ConfigError) as caught:
        lockfiles.detect(conf)
    assert f"REQUIREMENTS: APP_DIR {conf.app_dir} has none of uv.lock (with pyproject.toml), poetry.lock, pdm.lock, requirements.txt" in str(caught.value)  # fmt: skip
    assert lockfiles.detect(conf, required=False) == ""


def test_a_requirements_file_without_gunicorn_gets_the_documented_one(tmp_path: Path) -> None:
    conf = project(tmp_path, {"requirements.txt": "-r base.txt\n", "base.txt": "flask\n"})
    found = lockfiles.read(conf)
    assert (found.kind, found.file, found.included, found.added) == ("requirements", "requirements.txt", ("base.txt",), (GUNICORN,))  # fmt: skip
    assert found.wanted == f"-r base.txt\n{lockfiles.ADDED_COMMENT}\n{GUNICORN}\n"
    assert found.for_hosts() == f"-r requirements.txt\n{lockfiles.ADDED_COMMENT}\n{GUNICORN}\n"
    assert GUNICORN in found.identity
    (conf.app_dir / "base.txt").write_text("flask\ngunicorn==22.0.0\n")  # the app's pin wins
    pinned = lockfiles.read(conf)
    assert pinned.added == () and pinned.wanted == pinned.text and pinned.for_hosts() == ""


def test_a_uv_lock_is_exported_by_uv_without_its_dev_group(tmp_path: Path) -> None:
    conf = uvapp(tmp_path, "WORKER_CLASS=uvicorn_worker.UvicornWorker\n")
    found = lockfiles.read(conf)
    assert (found.kind, found.file, found.included) == ("uv", "uv.lock", ("pyproject.toml",))
    lines = found.text.splitlines()
    assert "flask==3.1.3" in lines and "werkzeug==3.1.9" in lines
    assert not any(line.startswith(("pytest", "hello-uv", "-e")) for line in lines)  # dev, project
    assert found.added == (GUNICORN, "uvicorn-worker==0.4.0")
    assert found.wanted.endswith(f"{GUNICORN}\nuvicorn-worker==0.4.0\n")
    assert found.for_hosts() == found.wanted
    assert found.hashes["flask==3.1.3"] and all(len(h) == 64 for h in found.hashes["flask==3.1.3"])
    assert not (conf.app_dir / ".venv").exists()  # exporting made no venv in APP_DIR


def test_a_stale_uv_lock_is_refused_naming_it_and_uv_lock(tmp_path: Path) -> None:
    conf = uvapp(tmp_path)
    pyproject = conf.app_dir / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"flask>=3.0"', '"flask>=3.0", "six"'))
    with pytest.raises(FabdeployError) as caught:
        lockfiles.read(conf)
    text = str(caught.value)
    assert f"{conf.app_dir / 'uv.lock'} is out of date with {pyproject}: run `uv lock`" in text
    assert "needs to be updated" in text and "six" not in (conf.app_dir / "uv.lock").read_text()


def test_a_stale_lock_names_the_tool_fab_used_when_it_is_not_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = uvapp(tmp_path)
    pyproject = conf.app_dir / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"flask>=3.0"', '"flask>=3.0", "six"'))
    uv = lockfiles.tool("uv")
    assert uv is not None
    bare = tmp_path / "bin"  # fab run as .venv/bin/fab: a python on PATH (uv asks), no uv
    bare.mkdir()
    (bare / "python3").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(bare))
    with pytest.raises(FabdeployError) as caught:
        lockfiles.read(conf)
    where = f"run `uv lock` in {conf.app_dir} (`uv` is not on PATH; the one fab used is {uv}: `{uv} lock`) and commit the lock"  # fmt: skip
    assert where in str(caught.value)
    (bare / "uv").symlink_to(uv)  # on PATH: the plain command
    with pytest.raises(FabdeployError) as caught:
        lockfiles.read(conf)
    assert f"run `uv lock` in {conf.app_dir} and commit the lock" in str(caught.value)


def test_the_lock_s_hashes_are_checked_against_the_wheels(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    good, bad = wheels / "good-1.0-py3-none-any.whl", wheels / "Bad_Name-2.0-py3-none-any.whl"
    good.write_bytes(b"good")
    bad.write_bytes(b"served")
    (wheels / "extra-1.0-py3-none-any.whl").write_bytes(b"not in the lock")
    digest = hashlib.sha256(b"good").hexdigest()
    good_entry = f'wheels = [{{ url = "x", hash = "sha256:{digest}" }}]'
    bad_entry = 'sdist = { url = "y", hash = "sha256:00" }'
    lock = (
        f'[[package]]\nname = "good"\nversion = "1.0"\n{good_entry}\n'
        f'[[package]]\nname = "bad-name"\nversion = "2.0"\n{bad_entry}\n'
    )
    conf = project(tmp_path / "p", {"uv.lock": lock, "pyproject.toml": ""})
    with pytest.raises(FabdeployError) as caught:
        lockfiles.verify(conf, wheels, set())
    served = hashlib.sha256(b"served").hexdigest()
    assert f"{bad.name}: its sha256 {served} is not one uv.lock lists for Bad_Name 2.0" in str(caught.value)  # fmt: skip
    lockfiles.verify(conf, wheels, {bad.name})  # built from the sdist: its wheel is new
    bad.unlink()
    lockfiles.verify(conf, wheels, set())


@pytest.mark.parametrize("lock", ["poetry.lock", "pdm.lock"])
def test_a_lock_whose_tool_is_missing_names_the_lock_the_tool_and_the_ways_out(
    tmp_path: Path, lock: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lockfiles, "tool", lambda kind: None)
    conf = project(tmp_path, {lock: "[[package]]\n", "pyproject.toml": ""})
    with pytest.raises(FabdeployError) as caught:
        lockfiles.read(conf)
    kind = lock.split(".")[0]
    assert f"{conf.app_dir / lock}: the packages come from this {kind} lock, and `{kind}` is not installed where fab runs" in str(caught.value)  # fmt: skip
    assert lockfiles.INSTALL[kind] in str(caught.value) and "REQUIREMENTS=" in str(caught.value)


def test_the_test_venv_s_group_comes_pinned_from_the_lock(tmp_path: Path) -> None:
    conf = uvapp(tmp_path)
    found = testenv.find(conf)
    assert found.source == "pyproject.toml [dependency-groups] dev, locked in uv.lock"
    assert "pytest==9.2.0" in found.text.splitlines() and "flask" not in found.names()
    assert testenv.app_requirements(conf) == lockfiles.read(conf).wanted
