"""The smoke check: a release served on a side port of the host until healthy, before any
switch (``scripts/smoke.sh``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core import shell
from ..core.errors import HostError
from ..core.paths import layout
from . import appenv, service

if TYPE_CHECKING:
    from ..ssh.host import Host


def smoke_command(host: Host, release: str) -> None:
    """SMOKE_COMMAND in ``release`` as the app runs (venv, secrets); a failure fails smoke."""
    command = host.settings.smoke_command.strip()
    if not command:
        return
    where = layout(host.settings).release(release)
    host.say(f"smoke: {command}")
    result = host.run(
        appenv.command_line(host.settings, where, command),
        user=host.app_user,
        warn=True,
        label="smoke",
    )
    if result.failed:
        raise HostError(
            host.name,
            f"smoke check of release {release} failed: SMOKE_COMMAND exit {result.exited}",
        )


def smoke(host: Host, release: str) -> None:
    """SMOKE_COMMAND, then import the WSGI target and serve ``release`` on a side port until it
    is healthy and each path of CANARY_URLS answers there without a 5xx (a home page that
    raises stops the deploy before any switch, so no request is answered wrong)."""
    settings = host.settings
    paths = layout(settings)
    smoke_command(host, release)
    result = host.script(
        shell.shell("smoke"),
        env={
            **service.health_env(settings),
            "APP_USER": host.app_user,
            "RELEASE": paths.release(release),
            "CONF": paths.gunicorn_conf,
            "WSGI_APP": settings.wsgi_app,
            "IMPORT_CODE": shell.script_file("import_target.py"),
            "INCOMING": paths.incoming,
            "HEALTH_PATH": settings.health_path,
            "PROBE_PATHS": "\n".join(settings.canary_urls),
            "TIMEOUT": settings.health_timeout,
            "LIMIT": settings.health_timeout + 30,
        },
        warn=True,
        label="smoke",
    )
    if result.failed:
        sent = settings.health_host or "127.0.0.1:<side port>"
        why = service.refused_in(settings, result.stderr, sent)
        raise HostError(
            host.name, f"smoke check of release {release} failed" + (f". {why}" if why else "")
        )
