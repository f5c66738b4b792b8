"""Stage test: the app's own test suite gates a deploy; a smoke check gates a switch.

``fab test`` runs the app's test suite on this machine (`tasks.build.testrun.run_suite`, in
the test venv of `tasks.build.testenv`); ``fab test.smoke`` serves a release on a side port of
each host until it is healthy (`tasks.host.smoke`). A deploy runs both as its ``test`` and
``smoke`` steps (docs/test.md).
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
