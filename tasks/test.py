"""Stage test: the app's own test suite gates a deploy; a smoke check gates a switch.

Functions other modules compose:

- `run_suite(c, settings, output=None)` runs the app's test suite in APP_DIR on this machine
  and raises `FabdeployError` when it fails, saying it was the test step, the command, and
  how to change or skip it. The command and the environment come from `tasks.testenv`: a
  local venv of the app's requirements (from the build's cached wheelhouse) plus its test
  requirements, TEST_COMMAND or the detected command (pytest, or ``manage.py test`` for a
  Django project without pytest). TEST_VENV=no keeps the way before the venv: fab's own
  interpreter with the app's packages first on ``PYTHONPATH`` (`packages.prebuilt`);
- `smoke(host, release)` checks a release on the host before it is switched to: its own
  Python imports the WSGI target (with the app's secrets in the environment), then gunicorn
  serves it on a free port of 127.0.0.1 (1 worker, as the app user, with the production
  gunicorn.conf.py) until HEALTH_PATH answers 200 (``scripts/smoke.sh``, then
  ``scripts/import_target.py`` to name an import error). A failure prints the app's output.
"""

from __future__ import annotations

from invoke import Collection, task

from . import config
from .build.testrun import run_suite
from .core.errors import FabdeployError, HostError
from .host import service
from .host.smoke import smoke
from .ssh import session


@task
def local(c):  # type: ignore[no-untyped-def]
    """Run the app's test suite locally (TEST_COMMAND in APP_DIR)."""
    run_suite(c, config.load(c))


@task(name="smoke", help={"release": "release to check (default: the one `current` points to)"})
def smoke_(c, release=""):  # type: ignore[no-untyped-def]
    """Import the WSGI target with a release's Python and serve it on a side port."""
    _, hosts = session.session(c)
    failed = []
    for host in hosts:
        try:
            name = release or service.current_release(host)
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
