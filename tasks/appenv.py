"""The app's environment on a host: the command line that runs something as the app runs.

`command(settings, where, command)` is the shell line (for `Host.run` with ``user=`` the app
user) that runs ``command`` in the release directory ``where``, with that release's venv first
on PATH (``VIRTUAL_ENV`` set, so ``python``, ``flask``, ``celery``, ``manage.py`` shebangs
resolve to it) and the app's secrets from ``where/.env`` in its environment, parsed by
``scripts/with_secrets.py``, never sourced. Hooks and ``fab exec`` both use it.
"""

from __future__ import annotations

from pathlib import Path

from .config import Settings
from .remote import quote

#: The helper that puts the secrets into the environment, shipped as package data.
WITH_SECRETS = Path(__file__).resolve().parent / "scripts" / "with_secrets.py"


def command(settings: Settings, where: str, command: str, *, venv: bool = True) -> str:
    """``bash -c`` line running ``command`` in ``where`` like the app (see the module doc).

    ``venv=False`` (before a release has one) uses the host's PYTHON and leaves PATH alone.
    """
    python = ".venv/bin/python" if venv else settings.python
    path = 'export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH"; ' if venv else ""
    script = (
        f'cd {quote(where)} && {path}exec {quote(python)} -c {quote(WITH_SECRETS.read_text())} "$0"'
    )
    return f"bash -c {quote(script)} {quote(command)}"
