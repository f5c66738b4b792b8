"""tasks/build/pyreq.py: the app's Python requirement (PYTHON_REQUIRES, else requires-python of
pyproject.toml) against each host's Python and the local test step's, in one line."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from tasks import config
from tasks.build import pyreq
from tasks.core.errors import ConfigError, FabdeployError, HostError, detail
from tasks.host import facts, provision
from tasks.steps import checks, planning
from tests.unit.fake_tags import SERVER_313

BOOKWORM = "Python 3.11.2 (main, Mar 13 2023, 12:18:29) [GCC 12.2.0] linux-x86_64"
TRIXIE = "Python 3.13.5 (main, Jun 25 2025, 18:55:22) [GCC 14.2.0] linux-x86_64"


def project(tmp_path: Path, pyproject: str | None = None, extra: str = "") -> config.Settings:
    (tmp_path / "app").mkdir(parents=True, exist_ok=True)
    (tmp_path / "app" / "requirements.txt").write_text("gunicorn\n")
    if pyproject is not None:
        (tmp_path / "app" / "pyproject.toml").write_text(pyproject)
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\nAPP_DIR=app\n" + extra)
    return config.build("staging", tmp_path)


PYPROJECT = '[project]\nname = "shop"\nrequires-python = ">=3.12"\n'


def test_requires_python_of_pyproject(tmp_path: Path) -> None:
    settings = project(tmp_path, PYPROJECT)
    found = pyreq.find(settings)
    assert found is not None
    assert found.describe() == '">=3.12" (requires-python in app/pyproject.toml)'
    assert found.allows("3.12.0") and found.allows("3.14.0rc1")  # a pre-release Python too
    assert not found.allows("3.11.2")


def test_the_key_wins_over_pyproject(tmp_path: Path) -> None:
    settings = project(tmp_path, PYPROJECT, "# Debian 12's\nPYTHON_REQUIRES= >=3.11, <3.14\n")
    found = pyreq.find(settings)
    assert found is not None and found.allows("3.11.2") and not found.allows("3.14.0")
    assert found.source == f"PYTHON_REQUIRES in {settings.source}:4"


def test_no_requirement_checks_nothing(tmp_path: Path) -> None:
    assert pyreq.find(project(tmp_path)) is None
    settings = project(tmp_path / "b", '[project]\nname = "shop"\n')
    assert pyreq.find(settings) is None
    assert pyreq.check_host(settings, BOOKWORM) == ""
    assert pyreq.describe(settings).startswith("none (no PYTHON_REQUIRES")


def test_a_bad_requirement_is_refused_naming_its_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"staging\.env:3: PYTHON_REQUIRES: expected a PEP 440"):
        project(tmp_path, None, "PYTHON_REQUIRES=3.12+\n")
    settings = project(tmp_path / "b", '[project]\nrequires-python = "3.12+"\n')
    with pytest.raises(FabdeployError, match=r"app/pyproject\.toml: requires-python '3\.12\+'"):
        pyreq.find(settings)
    broken = project(tmp_path / "c", "[project\n")
    with pytest.raises(FabdeployError, match=r"app/pyproject\.toml: cannot read it"):
        pyreq.find(broken)


def test_a_host_python_too_old_gives_one_line(tmp_path: Path) -> None:
    settings = project(tmp_path, PYPROJECT)
    line = pyreq.check_host(settings, BOOKWORM)
    assert line == (
        "PYTHON python3 is Python 3.11.2, which does not satisfy the app's Python requirement "
        '">=3.12" (requires-python in app/pyproject.toml): install a Python that does on the '
        "host and set PYTHON to it (PYTHON=python3 now), or change the requirement"
    )
    assert "\n" not in line
    assert pyreq.check_host(settings, TRIXIE) == ""
    with pytest.raises(HostError) as caught:
        pyreq.require_host(settings, "web1", BOOKWORM)
    assert str(caught.value) == f"fabdeploy: [web1] {line}"
    assert pyreq.check_host(settings, "Python 3.12.0") == ""  # setup's answer


def test_the_local_test_python(tmp_path: Path) -> None:
    mine = platform.python_version()
    settings = project(tmp_path, None, "PYTHON_REQUIRES=>=99\n")
    line = pyreq.check_local(settings)
    assert line.startswith(
        f"the local Python that runs the test step is Python {mine}, which does not satisfy "
        'the app\'s Python requirement ">=99" (PYTHON_REQUIRES in '
    )
    with pytest.raises(FabdeployError):
        pyreq.require_local(settings)
    [finding] = [f for f in checks.local(settings) if f.check == "python requirement"]
    assert not finding.ok and finding.detail == line
    no_tests = project(tmp_path / "b", None, "PYTHON_REQUIRES=>=99\nTEST_COMMAND=\n")
    assert pyreq.check_local(no_tests) == ""  # no test step: the local Python runs no app code
    [finding] = [f for f in checks.local(no_tests) if f.check == "python requirement"]
    assert finding.ok and finding.detail.endswith(
        "no test step (TEST_COMMAND is empty): the local Python runs no app code"
    )
    fine = project(tmp_path / "c", None, f"PYTHON_REQUIRES=>={mine}\n")
    [finding] = [f for f in checks.local(fine) if f.check == "python requirement"]
    assert finding.ok and finding.detail.endswith(
        f"the local test step's Python {mine} satisfies it"
    )


def test_check_plan_and_setup_refuse_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = project(tmp_path, PYPROJECT)
    old = facts.Facts(BOOKWORM, "3.11", "", SERVER_313)
    with pytest.raises(FabdeployError) as caught:
        checks.host_python(settings, old)
    assert detail(caught.value) == pyreq.check_host(settings, BOOKWORM)
    new = facts.Facts(TRIXIE, "3.13", "", SERVER_313)
    assert checks.host_python(settings, new).endswith(
        'satisfies ">=3.12" (requires-python in app/pyproject.toml)'
    )

    class FakeHost:
        name = "web1"

    host = FakeHost()
    host.settings = settings  # type: ignore[attr-defined]
    monkeypatch.setattr(facts, "read_facts", lambda h: old)
    with pytest.raises(
        HostError, match=r"^fabdeploy: \[web1\] PYTHON python3 is Python 3\.11\.2, which"
    ):
        planning.checked(host)  # type: ignore[arg-type]
    monkeypatch.setattr(facts, "read_facts", lambda h: new)
    assert planning.checked(host) is new  # type: ignore[arg-type]
    said: list[str] = []
    host.say = said.append  # type: ignore[attr-defined]
    monkeypatch.setattr(
        provision, "system_packages", lambda h: provision.Change("packages", False, "Python 3.11.2")
    )
    monkeypatch.setattr(provision, "app_user", lambda h: pytest.fail("setup went on"))
    with pytest.raises(
        HostError, match=r"^fabdeploy: \[web1\] PYTHON python3 is Python 3\.11\.2, which"
    ):
        provision.set_up(host)  # type: ignore[arg-type]
