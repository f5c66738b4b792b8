"""The files setup renders from tasks/templates/: the app's unit, each companion process's
unit, gunicorn.conf.py and the logrotate file."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from ..config.settings import WEB
from ..core import sandbox
from ..core.paths import layout

if TYPE_CHECKING:
    from ..config import Settings


def process_unit_path(settings: Settings, process: str) -> str:
    """Where ``process``'s unit file lives."""
    return f"/etc/systemd/system/{unit_name(settings, process)}"


def render_process_unit(settings: Settings, process: str, user: str, group: str) -> str:
    """The text of ``/etc/systemd/system/<app>-<process>.service``."""

    paths = layout(settings)
    current = paths.current.replace("%", "%%")
    venv = f"{current}/.venv"
    environment = [f"VIRTUAL_ENV={venv}", f"PATH={venv}/bin:/usr/local/bin:/usr/bin:/bin"]
    text = (TEMPLATES / "process.service.in").read_text(encoding="utf-8")
    return Template(text).substitute(
        unit=unit_name(settings, process),
        process=process,
        app_name=settings.app_name,
        user=user,
        group=group,
        current=current,
        settings_file=paths.settings_file.replace("%", "%%"),
        env_file=paths.env_file.replace("%", "%%"),
        environment=" ".join(systemd_quote(item) for item in environment),
        command=systemd_quote("exec " + settings.processes[process]),
        stop_timeout=settings.stop_timeout,
        sandbox=sandbox_text(settings, process),
    )


TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def service_unit(settings: Settings) -> str:
    """The app's systemd unit: ``<APP_NAME>.service``."""
    return f"{settings.app_name}.service"


def unit_name(settings: Settings, process: str) -> str:
    """The systemd unit of ``process`` (`WEB`, the app's own service, or a companion's)."""
    return service_unit(settings) if process == WEB else f"{settings.app_name}-{process}.service"


def environment_units(settings: Settings) -> list[str]:
    """Every unit of the environment: the web service, then each companion process's (a host
    runs those of its roles)."""
    return [service_unit(settings), *(unit_name(settings, p) for p in settings.processes)]


def systemd_quote(word: str) -> str:
    """``word`` as one argument of a systemd command line (specifiers and $ escaped)."""
    escaped = word.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./$-]+", escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _systemd_path(path: str) -> str:
    return path.replace("%", "%%")


def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


def exec_start(settings: Settings) -> list[str]:
    """The service's command: gunicorn via `current`'s venv python, paths not resolved."""
    paths = layout(settings)
    return [
        f"{paths.current}/.venv/bin/python",
        "-m",
        "gunicorn",
        "--daemon",
        "--config",
        paths.gunicorn_conf,
        settings.wsgi_app,
    ]


def render_unit(settings: Settings, user: str, group: str) -> str:
    """The text of ``/etc/systemd/system/<app>.service``."""
    paths = layout(settings)
    return _template("app.service.in").substitute(
        app_name=settings.app_name,
        pidfile=_systemd_path(paths.pidfile),
        runtime_directory=_systemd_path(paths.run.removeprefix("/run/")),
        user=user,
        group=group,
        current=_systemd_path(paths.current),
        settings_file=_systemd_path(paths.settings_file),
        env_file=_systemd_path(paths.env_file),
        exec_start=" ".join(systemd_quote(word) for word in exec_start(settings)),
        timeout=max(30, settings.health_timeout + 10),
        sandbox=sandbox_text(settings, WEB),
    )


def writable_paths(settings: Settings, process: str) -> list[str]:
    """What ``process``'s unit may write: the linked paths in shared/ (LINKED_DIRS,
    LINKED_FILES), the logs, the web's runtime files (pidfile, ready markers) and
    SANDBOX_WRITABLE. Everything else on the host is read-only to it."""
    paths = layout(settings)
    linked = (*settings.linked_dirs, *settings.linked_files)
    runtime = [paths.pids] if process == WEB else []
    found = [f"{paths.shared}/{path}" for path in linked] + [paths.logs, *runtime]
    return list(dict.fromkeys([*found, *settings.sandbox_writable]))


def sandbox_text(settings: Settings, process: str) -> str:
    """The sandbox lines of ``process``'s unit (`tasks.core.sandbox`)."""
    found = sandbox.lines(
        layout(settings).root,
        [_systemd_path(path) for path in writable_paths(settings, process)],
        settings.sandbox_capabilities,
        settings.sandbox_without,
    )
    return "\n".join(found)


def render_gunicorn_conf(settings: Settings) -> str:
    """The text of ``/etc/<app>/gunicorn.conf.py`` (values as Python literals)."""
    paths = layout(settings)
    return _template("gunicorn.conf.py.in").substitute(
        app_name=settings.app_name,
        app_name_py=repr(settings.app_name),
        env_file_text=paths.env_file,
        settings_file_text=paths.settings_file,
        bind=repr(settings.bind),
        workers=settings.workers,
        pidfile=repr(paths.pidfile),
        current=repr(paths.current),
        error_log=repr(paths.error_log),
        access_log=repr(paths.access_log),
        graceful_timeout=max(10, settings.health_timeout),
        env_file=repr(paths.env_file),
        settings_file=repr(paths.settings_file),
        worker_class=repr(settings.worker_class),
        threads=settings.threads,
        timeout=settings.worker_timeout,
        max_requests=settings.max_requests,
        max_requests_jitter=settings.max_requests_jitter,
        own_config=repr(settings.gunicorn_config),
    )


def render_logrotate(settings: Settings, user: str, group: str) -> str:
    """The text of ``/etc/logrotate.d/<app>``: shared/log/*.log, copytruncate."""
    paths = layout(settings)
    return _template("logrotate.in").substitute(
        app_name=settings.app_name,
        logs=paths.logs.replace('"', ""),
        user=user,
        group=group,
    )
