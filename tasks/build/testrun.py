"""The app's test suite, run on this machine: the deploy's ``test`` step and ``fab test``.

`run_suite(c, settings, output=None)` runs the app's test suite in APP_DIR and raises
`FabdeployError` when it fails, saying it was the test step, the command, and how to change
or skip it. The command and the environment come from `tasks.build.testenv`: a local venv of
the app's requirements (from the build's cached wheelhouse) plus its test requirements,
TEST_COMMAND or the detected command (pytest, or ``manage.py test`` for a Django project
without pytest). TEST_VENV=no keeps the way before the venv: fab's own interpreter with the
app's packages first on ``PYTHONPATH`` (`packages.prebuilt`).

The smoke check that gates a switch runs on the hosts: `tasks.host.smoke`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from invoke import Context

from ..core import shell
from ..core.errors import FabdeployError, detail
from ..core.output import LineWriter, Output
from . import lockfiles, packages, pyreq, testenv

if TYPE_CHECKING:
    from ..config import Settings


#: pytest's exit status when it collected no tests.
NO_TESTS = 5


def uncollected_hint(app_dir: Path) -> str:
    """When pytest collected nothing, the test files at the top of APP_DIR its default
    ``python_files`` (test_*.py, *_test.py) skip, such as a unittest suite's ``tests.py``."""
    if testenv.pytest_configured(app_dir):
        return ""
    skipped = sorted(
        p.name
        for p in app_dir.glob("test*.py")
        if not p.name.startswith("test_") and not p.name.endswith("_test.py")
    )
    if not skipped:
        return ""
    return (
        f"pytest collects test_*.py and *_test.py files, not {', '.join(skipped)}: for a "
        f"unittest suite set TEST_COMMAND=python -m unittest (it finds test*.py), or name the "
        f"file: TEST_COMMAND=python -m pytest -q {skipped[0]}. "
    )


def app_packages(settings: Settings, say: Callable[[str], None]) -> Path | None:
    """The app's packages installed locally from the local wheelhouse (both cached, shared
    with the build); None when APP_DIR has no lock or requirements file."""
    wheels = testenv.wheelhouse(settings, say)
    return packages.prebuilt(settings, wheels, say) if wheels is not None else None


def test_env(site: Path | None) -> dict[str, str]:
    """TEST_VENV=no: PATH with fab's interpreter first and, with ``site``, PYTHONPATH with the
    app's packages first."""
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if site is not None:
        rest = os.environ.get("PYTHONPATH", "")
        env["PYTHONPATH"] = str(site) + (f"{os.pathsep}{rest}" if rest else "")
    return env


def venv_env(venv: Path) -> dict[str, str]:
    """The test venv activated: its bin first on PATH, VIRTUAL_ENV, no PYTHONPATH of fab's."""
    path = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return {"PATH": path, "VIRTUAL_ENV": str(venv), "PYTHONPATH": ""}


def ways_out(settings: Settings) -> str:
    """How to change or skip the test step, for its errors."""
    return (
        f"set TEST_COMMAND in {settings.file_of('TEST_COMMAND')} to change the command (TEST_COMMAND=...; an "
        "empty TEST_COMMAND= runs none), or deploy with --skip-tests"
    )


def fab_python(settings: Settings, say: Callable[[str], None]) -> tuple[dict[str, str], str]:
    """TEST_VENV=no: the environment and the words for fab's own Python with the app's
    packages first (the behaviour before the test venv)."""
    site = app_packages(settings, say)
    if site is None:
        return test_env(None), f"fab's own Python and packages: no {settings.requirements or 'lock or requirements file'} in APP_DIR"  # fmt: skip
    count = len(list(site.glob("*.dist-info")))
    shown = pyreq.shown(settings, site)
    return test_env(site), f"fab's Python, the app's requirements first: {count} packages from {shown}"  # fmt: skip


def test_venv(settings: Settings, command: str, found: testenv.TestRequirements, say: Callable[[str], None]) -> tuple[dict[str, str], str]:  # fmt: skip
    """The environment and the words for the test venv of the app's and test requirements."""
    extra = ("pytest",) if testenv.needs_pytest(command, found, settings) else ()
    if extra:
        say(
            "test: the command runs pytest and no requirement names it: pytest is added to "
            "the test venv (name it in the test requirements to choose its version)"
        )
    venv = testenv.venv(settings, found, extra, say)
    shown = pyreq.shown(settings, venv)
    plus = f" + {found.source}" if found.source else ", no test requirements found"
    return venv_env(venv), f"venv {shown}: {lockfiles.top(settings)}{plus}"


def run_suite(c: Context, settings: Settings, output: Output | None = None) -> float:
    """Run the test suite in APP_DIR locally; raise `FabdeployError` if it fails. Returns seconds."""
    output = output or Output(mask=settings.secrets.values())
    if not settings.app_dir.is_dir():
        raise FabdeployError(f"APP_DIR {settings.app_dir} is not a directory")
    try:
        found = testenv.find(settings) if settings.test_venv else testenv.TestRequirements()
        command, why = testenv.choose(settings, found)
        if not command:
            output.say("test: TEST_COMMAND is empty: no local tests")
            return 0.0
        if settings.test_venv:
            env, using = test_venv(settings, command, found, output.say)
        else:
            env, using = fab_python(settings, output.say)
    except FabdeployError as exc:
        said = detail(exc)
        said = said if said.startswith("test step") else f"test step: {said}"
        raise FabdeployError(f"{said}\nNothing was deployed; {ways_out(settings)}") from None
    local = Context(config=c.config)  # under `fab -H`, c is a Connection: run locally anyway
    output.say(f"test: {command} ({why}; in {settings.app_dir}, with {using})")
    out = LineWriter(output, "local")
    err = LineWriter(output, "local", err=True)
    started = time.monotonic()
    try:  # invoke's `cd` escapes only spaces: quote APP_DIR ourselves
        result = local.run(
            f"cd {shell.quote(settings.app_dir)} && {command}",
            warn=True,
            hide=False,
            pty=False,
            in_stream=False,
            env=env,
            out_stream=out,
            err_stream=err,
        )
    finally:
        out.close()
        err.close()
    seconds = time.monotonic() - started
    if result.exited == NO_TESTS and "pytest" in command:
        raise FabdeployError(
            f"test step: no tests found: {command!r} in {settings.app_dir} collected no tests "
            f"(pytest's exit {NO_TESTS}); nothing was deployed. {uncollected_hint(settings.app_dir)}"
            f"Add tests, or: {ways_out(settings)}"
        )
    if result.ok and "manage.py test" in command and "Ran 0 tests" in result.stdout + result.stderr:
        raise FabdeployError(
            f"test step: no tests found: {command!r} in {settings.app_dir} ran 0 tests (Django's "
            "runner finds TestCase classes in test*.py files); nothing was deployed. Tests "
            "written for pytest need pytest in the test requirements (TEST_REQUIREMENTS, a "
            f"test/dev group or extra, requirements-test.txt). Else: {ways_out(settings)}"
        )
    if result.failed:
        raise FabdeployError(
            f"test step: local tests failed (exit {result.exited}): {command!r} in "
            f"{settings.app_dir}; nothing was deployed. {ways_out(settings)}"
        )
    output.say(f"test: passed in {seconds:.1f}s")
    return seconds
