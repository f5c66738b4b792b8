"""Stage test: the app's own test suite gates a deploy; a smoke check gates a switch.

Functions other modules compose:

- `run_local(c, settings, output=None)` runs TEST_COMMAND in APP_DIR on this machine and
  raises `FabdeployError` when it fails (before any host is touched). It runs with the app's
  own requirements: the packages the build installs locally for the hosts of this machine's
  Python (`packages.prebuilt`, from the cached local wheelhouse; the build then reuses
  both), first on ``PYTHONPATH``, so ``python`` (fab's own interpreter) imports the app's
  versions and falls back to fab's venv only for what they lack (pytest, say);
- `smoke(host, release)` checks a release on the host before it is switched to: its own
  Python imports the WSGI target (with the app's secrets in the environment), then gunicorn
  serves it on a free port of 127.0.0.1 (1 worker, as the app user, with the production
  gunicorn.conf.py) until HEALTH_PATH answers 200 (``scripts/smoke.sh``, then
  ``scripts/import_target.py`` to name an import error). A failure prints the app's output.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from invoke import Collection, Context, task

from . import appenv, config, packages, remote, run, tags
from .config import Settings
from .errors import FabdeployError, HostError
from .layout import Layout
from .remote import Host, LineWriter, Output

#: pytest's exit status when it collected no tests.
NO_TESTS = 5


def smoke_command(host: Host, release: str) -> None:
    """SMOKE_COMMAND in ``release`` as the app runs (venv, secrets); a failure fails smoke."""
    command = host.settings.smoke_command.strip()
    if not command:
        return
    where = Layout(host.settings.deploy_root).release(release)
    host.say(f"smoke: {command}")
    result = host.run(
        appenv.command(host.settings, where, command), user=host.app_user, warn=True, label="smoke"
    )
    if result.failed:
        raise HostError(
            host.name,
            f"smoke check of release {release} failed: SMOKE_COMMAND exit {result.exited}",
        )


def smoke(host: Host, release: str) -> None:
    """SMOKE_COMMAND, then import the WSGI target and serve ``release`` on a side port until it
    is healthy."""
    settings = host.settings
    paths = Layout(settings.deploy_root)
    smoke_command(host, release)
    result = host.script(
        remote.shell("smoke"),
        env={
            **run.health_env(settings),
            "APP_USER": host.app_user,
            "RELEASE": paths.release(release),
            "CONF": paths.gunicorn_conf,
            "WSGI_APP": settings.wsgi_app,
            "IMPORT_CODE": remote.script_file("import_target.py"),
            "INCOMING": paths.incoming,
            "SMOKE_PID": f"{paths.pids}/smoke-{release}.pid",
            "HEALTH_PATH": settings.health_path,
            "TIMEOUT": settings.health_timeout,
            "LIMIT": settings.health_timeout + 30,
        },
        warn=True,
        label="smoke",
    )
    if result.failed:
        sent = settings.health_host or "127.0.0.1:<side port>"
        why = run.refused_in(settings, result.stderr, sent)
        raise HostError(
            host.name, f"smoke check of release {release} failed" + (f". {why}" if why else "")
        )


def app_packages(settings: Settings, say: Callable[[str], None]) -> Path | None:
    """REQUIREMENTS installed locally from the local wheelhouse (both cached, shared with
    the build); None when APP_DIR has no requirements file."""
    path = settings.app_dir / settings.requirements
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if not text.strip():
        return None
    local = tags.local()
    wheels = packages.wheelhouse(settings, text, local, local, (), say)
    return packages.prebuilt(settings, wheels, say)


def test_env(site: Path | None) -> dict[str, str]:
    """PATH with fab's interpreter first and, with ``site``, PYTHONPATH with the app's
    packages first."""
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if site is not None:
        rest = os.environ.get("PYTHONPATH", "")
        env["PYTHONPATH"] = str(site) + (f"{os.pathsep}{rest}" if rest else "")
    return env


def run_local(c: Context, settings: Settings, output: Output | None = None) -> float:
    """Run TEST_COMMAND in APP_DIR locally; raise `FabdeployError` if it fails. Returns seconds."""
    output = output or Output(mask=settings.secrets.values())
    if not settings.test_command.strip():
        output.say("test: TEST_COMMAND is empty: no local tests")
        return 0.0
    if not settings.app_dir.is_dir():
        raise FabdeployError(f"APP_DIR {settings.app_dir} is not a directory")
    local = Context(config=c.config)  # under `fab -H`, c is a Connection: run locally anyway
    site = app_packages(settings, output.say)
    if site is None:
        using = f"fab's own Python and packages: no {settings.requirements} in APP_DIR"
    else:
        count = len(list(site.glob("*.dist-info")))
        shown = (
            site.relative_to(settings.project_dir) if settings.project_dir in site.parents else site
        )
        using = f"the app's requirements: {count} packages from {shown}, then fab's own"
    output.say(f"test: {settings.test_command} (in {settings.app_dir}, with {using})")
    out = LineWriter(output, "local")
    err = LineWriter(output, "local", err=True)
    started = time.monotonic()
    try:  # invoke's `cd` escapes only spaces: quote APP_DIR ourselves
        result = local.run(
            f"cd {remote.quote(settings.app_dir)} && {settings.test_command}",
            warn=True,
            hide=False,
            pty=False,
            in_stream=False,
            env=test_env(site),
            out_stream=out,
            err_stream=err,
        )
    finally:
        out.close()
        err.close()
    seconds = time.monotonic() - started
    if result.exited == NO_TESTS and "pytest" in settings.test_command:
        raise FabdeployError(
            f"no tests found: {settings.test_command!r} in {settings.app_dir} collected no tests "
            f"(pytest's exit {NO_TESTS}); nothing was deployed. Add tests, set TEST_COMMAND in "
            f"{settings.source} to the command that runs yours (an empty TEST_COMMAND= runs "
            "none), or deploy with --skip-tests"
        )
    if result.failed:
        raise FabdeployError(
            f"local tests failed (exit {result.exited}): {settings.test_command!r} in "
            f"{settings.app_dir}; nothing was deployed (--skip-tests skips them)"
        )
    output.say(f"test: passed in {seconds:.1f}s")
    return seconds


@task
def local(c):  # type: ignore[no-untyped-def]
    """Run the app's test suite locally (TEST_COMMAND in APP_DIR)."""
    run_local(c, config.load(c))


@task(name="smoke", help={"release": "release to check (default: the one `current` points to)"})
def smoke_(c, release=""):  # type: ignore[no-untyped-def]
    """Import the WSGI target with a release's Python and serve it on a side port."""
    _, hosts = remote.session(c)
    failed = []
    for host in hosts:
        try:
            name = release or run.current_release(host)
            if not name:
                raise HostError(host.name, "no current release to check")
            smoke(host, name)
        except FabdeployError as exc:
            host.output.line(host.name, str(exc).removeprefix("fabdeploy: "), err=True)
            failed.append(host.name)
        finally:
            host.close()
    if failed:
        raise FabdeployError(f"smoke check failed on {', '.join(failed)}")


ns = Collection("test")
ns.add_task(local, default=True)
ns.add_task(smoke_)
