"""The test step's venv and command (`tasks.build.testenv`): where test requirements are found,
which command runs when TEST_COMMAND is unset, and a real venv made from a file index on this
machine (no network): the app's package from the build's wheelhouse, a test-only package
fab's own environment lacks, reused while nothing changes, made again when it does."""

from __future__ import annotations

import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from invoke import Context

from tasks import config
from tasks.build import lockfiles, packages, tags, testenv, testrun, workers
from tasks.core.errors import FabdeployError
from tasks.core.local import exclusive
from tasks.core.output import Output
from tests.hosts import pyindex

PROBE = 'python -c "import sys, appprobe, testprobe; print(appprobe.VALUE, testprobe.VALUE, sys.prefix)"'


def settings(
    tmp_path: Path, extra: str = "", files: dict[str, str] | None = None
) -> config.Settings:
    app = tmp_path / "app"
    app.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config").mkdir(exist_ok=True)
    (app / "requirements.txt").write_text("flask\n")
    for name, text in (files or {}).items():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text(text)
    (tmp_path / "config" / "staging.env").write_text(f"APP_NAME=shop\nAPP_DIR=app\n{extra}")
    return config.build("staging", tmp_path)


# --- where the test requirements come from ------------------------------------------------


def test_test_requirements_key_wins_and_includes_are_followed(tmp_path: Path) -> None:
    conf = settings(
        tmp_path,
        "TEST_REQUIREMENTS=req/test.txt\n",
        {"req/test.txt": "-r base.txt\npytest-django\n", "req/base.txt": "factory-boy\n",
         "requirements-dev.txt": "other\n"},
    )  # fmt: skip
    found = testenv.find(conf)
    assert found.source == "req/test.txt" and found.file == tmp_path / "app" / "req" / "test.txt"
    assert found.names() == {"factory-boy", "pytest-django"}


def test_a_missing_test_requirements_file_names_the_test_step_and_the_key(tmp_path: Path) -> None:
    conf = settings(tmp_path, "TEST_REQUIREMENTS=nope.txt\n")
    with pytest.raises(FabdeployError, match=r"test step: .*staging.env:3: TEST_REQUIREMENTS: .*nope.txt not found"):  # fmt: skip
        testenv.find(conf)


def test_pyproject_dependency_group_then_extra_then_files(tmp_path: Path) -> None:
    groups = (
        '[project]\nname = "shop"\n[project.optional-dependencies]\ntest = ["extra-one"]\n'
        '[dependency-groups]\nlint = ["ruff"]\ndev = [{include-group = "lint"}, "pytest>=8"]\n'
    )
    found = testenv.find(settings(tmp_path, files={"pyproject.toml": groups}))
    assert found.source == "pyproject.toml [dependency-groups] dev"
    assert found.names() == {"ruff", "pytest"} and found.file is None
    extras = '[project]\nname = "shop"\n[project.optional-dependencies]\ntest = ["extra-one"]\n'
    found = testenv.find(settings(tmp_path, files={"pyproject.toml": extras}))
    assert (found.source, found.names()) == ("pyproject.toml [project.optional-dependencies] test", {"extra-one"})  # fmt: skip
    (tmp_path / "app" / "pyproject.toml").write_text('[project]\nname = "shop"\n')
    (tmp_path / "app" / "requirements-dev.txt").write_text("freezegun\n")
    assert testenv.find(settings(tmp_path)).source == "requirements-dev.txt"
    (tmp_path / "app" / "requirements-dev.txt").unlink()
    assert testenv.find(settings(tmp_path)) == testenv.TestRequirements()


# --- which command -------------------------------------------------------------------------


def test_django_without_pytest_runs_manage_py_test(tmp_path: Path) -> None:
    conf = settings(tmp_path, files={"manage.py": ""})
    command, why = testenv.choose(conf, testenv.find(conf))
    assert command == "python manage.py test" and "manage.py" in why


@pytest.mark.parametrize(
    "files",
    [
        {"requirements-test.txt": "pytest-django\n"},
        {"pytest.ini": "[pytest]\n"},
        {"pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-q'\n"},
        {"setup.cfg": "[tool:pytest]\n"},
    ],
)
def test_django_with_pytest_configured_or_required_runs_pytest(tmp_path: Path, files: dict[str, str]) -> None:  # fmt: skip
    conf = settings(tmp_path, files={"manage.py": "", **files})
    assert testenv.choose(conf, testenv.find(conf))[0] == "python -m pytest -q"


def test_a_set_test_command_is_used_as_set_even_empty(tmp_path: Path) -> None:
    conf = settings(tmp_path, "TEST_COMMAND=\n", {"manage.py": ""})
    assert testenv.choose(conf, testenv.find(conf))[0] == ""
    conf = settings(tmp_path, "TEST_COMMAND=make test\n", {"manage.py": ""})
    assert testenv.choose(conf, testenv.find(conf)) == ("make test", "TEST_COMMAND in staging.env")
    plain = settings(tmp_path / "plain")
    assert testenv.choose(plain, testenv.find(plain)) == ("python -m pytest -q", "the default")


def test_a_test_command_from_common_env_is_said_to_come_from_there(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "common.env").write_text("TEST_COMMAND=make test\n")
    conf = settings(tmp_path)
    assert testenv.choose(conf, testenv.find(conf)) == ("make test", "TEST_COMMAND in common.env")
    common = tmp_path / "config" / "common.env"
    assert f"set TEST_COMMAND in {common} to change the command" in testrun.ways_out(conf)
    conf = settings(tmp_path, "TEST_COMMAND=make check\n")  # the environment's overrides it
    assert testenv.choose(conf, testenv.find(conf)) == ("make check", "TEST_COMMAND in staging.env")
    assert f"set TEST_COMMAND in {conf.source} to change" in testrun.ways_out(conf)


def test_pytest_is_added_only_when_the_command_runs_it_and_nothing_names_it(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    none = testenv.TestRequirements()
    assert testenv.needs_pytest("python -m pytest -q", none, conf)
    assert not testenv.needs_pytest("python manage.py test", none, conf)
    named = testenv.TestRequirements("x", "pytest==8.0\n")
    assert not testenv.needs_pytest("python -m pytest -q", named, conf)


# --- a real venv, from a file index ------------------------------------------------------


def probe_project(tmp_path: Path, extra: str = "") -> config.Settings:
    """The app needs appprobe; its tests need testprobe too (REQUIREMENTS-TEST); the index
    has the server fabdeploy adds (a stand-in of gunicorn at its documented version)."""
    wheels = tmp_path / "wheels"
    for name, version in (("appprobe", "0.1"), ("testprobe", "0.1"), ("testprobe", "0.2"), workers.GUNICORN):  # fmt: skip
        pyindex.wheel(wheels, name, version)
    index = pyindex.build(tmp_path / "index", [], (), sorted(wheels.iterdir()))
    conf = settings(
        tmp_path / "project",
        f"PACKAGE_INDEX={index.as_uri()}\nTEST_COMMAND={PROBE}\nTEST_REQUIREMENTS=requirements-test.txt\n{extra}",
        {"requirements-test.txt": "testprobe==0.1\n"},
    )  # fmt: skip
    (conf.app_dir / "requirements.txt").write_text("appprobe\n")
    return conf


def run(conf: config.Settings) -> str:
    out = io.StringIO()
    testrun.run_suite(Context(), conf, Output(out, out))
    return out.getvalue()


def test_the_suite_runs_in_a_venv_of_the_app_s_and_test_requirements_reused_until_they_change(
    tmp_path: Path,
) -> None:
    assert importlib.util.find_spec("testprobe") is None  # not in fab's environment
    conf = probe_project(tmp_path)
    first = run(conf)
    made = re.search(r"test venv (\.fabdeploy/test-venvs/[0-9a-f]{16}): made in", first)
    assert made, first
    venv = conf.project_dir / made.group(1)
    assert f"[local] appprobe 0.1 testprobe 0.1 {venv}" in first, first
    assert "requirements.txt + requirements-test.txt" in first and "test: passed" in first
    again = run(conf)
    assert f"test venv {made.group(1)}: reused" in again and "made in" not in again
    (conf.app_dir / "requirements-test.txt").write_text("testprobe==0.2\n")
    changed = run(conf)
    assert "testprobe 0.2" in changed and f"{made.group(1)}: " not in changed
    assert venv.is_dir()  # kept (the newest KEEP are)


def test_the_old_way_is_fab_s_python_and_a_failure_names_the_test_step_and_the_ways_out(
    tmp_path: Path,
) -> None:
    conf = probe_project(tmp_path, "TEST_VENV=no\n")
    out = io.StringIO()
    with pytest.raises(FabdeployError) as caught:
        testrun.run_suite(Context(), conf, Output(out, out))
    assert "No module named 'testprobe'" in out.getvalue()  # fab's Python: the app's only
    assert "with fab's Python, the app's requirements first" in out.getvalue()
    message = str(caught.value)
    assert message.startswith("fabdeploy: test step: local tests failed (exit 1): ")
    assert PROBE in message and "nothing was deployed" in message
    for way_out in ("set TEST_COMMAND in", "TEST_COMMAND=...", "empty TEST_COMMAND= runs none", "--skip-tests"):  # fmt: skip
        assert way_out in message, message


def test_a_test_requirement_pip_cannot_install_names_the_test_step(tmp_path: Path) -> None:
    conf = probe_project(tmp_path)
    (conf.app_dir / "requirements-test.txt").write_text("nosuchprobe-xyz\n")
    with pytest.raises(FabdeployError) as caught:
        run(conf)
    message = str(caught.value)
    assert "test step: installing the test requirements (requirements-test.txt)" in message
    assert "nosuchprobe" in message and "--skip-tests" in message
    assert message.count("fabdeploy:") == 1 and message.count("test step") == 1, message
    left = (conf.project_dir / ".fabdeploy" / "test-venvs").iterdir()
    assert [p.name for p in left if not p.name.endswith(".lock")] == []  # none half-made


def test_django_s_runner_finding_no_tests_stops_the_deploy_saying_what_to_name(
    tmp_path: Path,
) -> None:
    conf = settings(tmp_path, "TEST_VENV=no\n", {"manage.py": "import sys\nprint('Ran 0 tests in 0.000s', file=sys.stderr)\n"})  # fmt: skip
    (conf.app_dir / "requirements.txt").unlink()
    with pytest.raises(FabdeployError) as caught:
        testrun.run_suite(Context(), conf, Output(io.StringIO(), io.StringIO()))
    message = str(caught.value)
    assert "test step: no tests found: 'python manage.py test'" in message
    assert "pytest in the test requirements" in message and "--skip-tests" in message


def test_the_test_venv_s_wheelhouse_is_the_build_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """One wheelhouse per requirements: the test step asks for the key the build uses
    (REQUIREMENTS' own text and the server fabdeploy adds), so a deploy resolves the app's
    packages once, not twice."""
    conf = settings(tmp_path, files={"requirements.txt": "-r base.txt\nflask\n", "base.txt": "click\n"})  # fmt: skip
    asked: list[str] = []
    monkeypatch.setattr(packages, "wheelhouse", lambda _s, text, *_a: asked.append(text))
    testenv.wheelhouse(conf, print)
    built = lockfiles.read(conf).wanted  # what the build passes
    assert built.startswith((conf.app_dir / "requirements.txt").read_text())
    assert built.endswith(f"\n{'=='.join(workers.GUNICORN)}\n")
    local = tags.local()
    assert packages.cache_key(conf, asked[0], local) == packages.cache_key(conf, built, local)


# --- FABDEPLOY_CACHE_DIR: one cache for every checkout -------------------------------------


def test_two_checkouts_share_the_wheelhouse_and_test_venv_of_fabdeploy_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "cache"
    monkeypatch.setenv("FABDEPLOY_CACHE_DIR", str(shared))
    one = probe_project(tmp_path)
    other_dir = tmp_path / "other"
    shutil.copytree(one.project_dir, other_dir)
    other = config.build("staging", other_dir)
    assert (one.cache_dir, other.cache_dir) == (shared, shared)
    first = run(one)
    made = re.search(r"test venv (\S+): made in", first)
    assert made and made.group(1).startswith(f"{shared}/test-venvs/"), first
    again = run(other)  # another checkout: nothing made again
    assert f"test venv {made.group(1)}: reused" in again, again
    assert f"(cached in {shared}/wheels/" in again and "made in" not in again, again
    assert not (one.project_dir / ".fabdeploy" / "test-venvs").exists()
    assert not (other_dir / ".fabdeploy" / "wheels").exists()


def test_a_path_requirement_keeps_its_wheelhouse_to_its_own_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FABDEPLOY_CACHE_DIR", str(tmp_path / "cache"))
    one = settings(tmp_path / "one", files={"requirements.txt": "./libs/probe\n"})
    other = settings(tmp_path / "two", files={"requirements.txt": "./libs/probe\n"})
    local = tags.local()
    text = "./libs/probe\n"
    assert packages.cache_key(one, text, local) != packages.cache_key(other, text, local)
    plain = settings(tmp_path / "three", files={"requirements.txt": "flask\n"})
    same = settings(tmp_path / "four", files={"requirements.txt": "flask\n"})
    assert packages.cache_key(plain, "flask\n", local) == packages.cache_key(same, "flask\n", local)


def test_one_fab_at_a_time_fills_a_cache_entry(tmp_path: Path) -> None:
    lock = tmp_path / "entry.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from tasks.core.local import exclusive\n"
         "with exclusive(Path(sys.argv[1])):\n print('held', flush=True); time.sleep(1.5)",
         str(lock)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    started = time.monotonic()
    with exclusive(lock):
        waited = time.monotonic() - started
    holder.wait(timeout=10)
    assert waited > 0.5, waited  # it waited for the holder to let go


def test_a_shared_cache_keeps_the_test_venvs_another_checkout_used_lately(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "test-venvs"
    for number in range(6):
        (folder / f"{number:016x}").mkdir(parents=True)
    keep = folder / f"{0:016x}"
    testenv.prune(folder, keep, shared=True)
    assert len(list(folder.iterdir())) == 6  # all used within IDLE
    stale = time.time() - testenv.IDLE - 60
    for number in range(1, 6):
        os.utime(folder / f"{number:016x}", (stale, stale + number))
    testenv.prune(folder, keep, shared=True)
    assert sorted(p.name for p in folder.iterdir()) == [f"{n:016x}" for n in (0, 4, 5)]
    testenv.prune(folder, keep, shared=False)  # a project's own: the KEEP newest, used or not
    assert len(list(folder.iterdir())) == testenv.KEEP
