"""Setup's items on a host: server packages, the app user, the directory layout, the
secrets and the unit files (``fab setup``: `tasks.steps.lists.SETUP`).

Every item checks the host first and changes it only when needed, reporting "changed" or
"no change" (a second ``fab setup`` prints "no change" for every item). Root actions use
``sudo -n``: passwordless sudo for the SSH user is a documented requirement.

Functions other modules compose:

- `set_up(host)` runs every item below in order and returns their `Change` list;
- `system_packages(host)`, `app_user(host)`, `directories(host, group)`,
  `upload_secrets(host, group)`, `shared_paths(host)`, `service_files(host, group)`,
  `process_units(host, group)` are the items;
- `running_keeps(host, changes)` says what the running processes keep until a deploy.

`tasks.host.facts` learns whether a host was set up (the deploy's ``check`` step);
`tasks.host.units` renders the templates.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..build import pyreq
from ..config import roles
from ..config.project import fab_command
from ..core import shell
from ..core.errors import HostError
from ..core.paths import layout, logrotate_file, unit_file
from . import linked, units
from .units import render_gunicorn_conf, render_logrotate, render_unit

if TYPE_CHECKING:
    from ..ssh.host import Host


_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\$?$")


@dataclass(frozen=True)
class Change:
    """One setup item on one host: whether it had to change anything."""

    item: str
    changed: bool
    detail: str = ""

    def line(self) -> str:
        state = "changed" if self.changed else "no change"
        return f"{self.item}: {state}" + (f" ({self.detail})" if self.detail else "")


def _say(host: Host, change: Change) -> Change:
    host.say(change.line())
    return change


def system_packages(host: Host) -> Change:
    """Install python3 and venv support with apt-get, only when ``PYTHON`` lacks them."""
    result = host.script(
        shell.shell("setup-packages"),
        env={"PYTHON": host.settings.python},
        hide=True,
        label="setup packages",
    )
    state, version = [*result.stdout.strip().splitlines(), "", ""][:2]
    return _say(host, Change("packages (python3, venv)", state == "changed", version))


def app_user(host: Host) -> tuple[Change, str]:
    """Create APP_USER (``useradd --system``) when missing; return it and its group."""
    name = host.app_user
    if not _USER.match(name):
        raise HostError(host.name, f"APP_USER {name!r} is not a valid user name")
    result = host.script(
        shell.shell("setup-user"),
        env={"APP_USER": name, "ROOT": layout(host.settings).root},
        hide=True,
        label="setup user",
    )
    state, group = [*result.stdout.strip().splitlines(), "", ""][:2]
    return _say(host, Change(f"user {name}", state == "changed")), group


def directories(host: Host, group: str) -> Change:
    """The deploy root and its directories, owned by the app user (.incoming by the SSH user)."""
    paths = layout(host.settings)
    owned = [paths.root, paths.releases, paths.venvs, paths.shared, paths.logs, paths.pids]
    result = host.script(
        shell.shell("setup-directories"),
        env={
            "DIRS": "\n".join(owned),
            "INCOMING": paths.incoming,
            "APP_USER": host.app_user,
            "GROUP": group,
        },
        hide=True,
        label="setup directories",
    )
    lines = result.stdout.strip().splitlines()
    detail = f"{len(lines) - 1} created or fixed" if lines[:1] == ["changed"] else paths.root
    return _say(host, Change("directories", lines[:1] == ["changed"], detail))


def upload_secrets(host: Host, group: str) -> Change:
    """Upload SECRETS_FILE to shared/.env (0600, app user) when its checksum differs."""
    settings = host.settings
    paths = layout(settings)
    if settings.secrets.path is None:
        return _say(host, Change("secrets", False, "no SECRETS_FILE configured"))
    text = settings.secrets.render()
    digest = hashlib.sha256(text.encode()).hexdigest()
    names = ", ".join(settings.secrets.names())
    want = f"{digest} {host.app_user}:{group}:600"
    have = host.script(
        shell.shell("secrets-have"),
        env={"DEST": paths.env_file},
        hide=True,
        label="setup secrets",
    ).stdout.strip()
    if have == want:
        return _say(host, Change("secrets shared/.env", False, names))
    remote_tmp = host.script(shell.shell("secrets-tmp"), hide=True, label="mktemp").stdout.strip()
    fd, local_tmp = tempfile.mkstemp(prefix="fabdeploy-env-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        host.put(Path(local_tmp), remote_tmp, progress=False)
        host.script(
            shell.shell("secrets-install"),
            env={
                "TMP": remote_tmp,
                "DEST": paths.env_file,
                "APP_USER": host.app_user,
                "GROUP": group,
                "DIGEST": digest,
            },
            hide=True,
            label="upload secrets",
        )
    finally:
        os.unlink(local_tmp)
    return _say(host, Change("secrets shared/.env", True, names))


def write_file(
    host: Host, path: str, text: str, *, owner: str = "root", group: str = "root", mode: str = "644"
) -> bool:
    """Write ``text`` to ``path`` as root, only when content or owner/mode differ."""
    result = host.script(
        shell.shell("write-file"),
        env={"DEST": path, "TEXT": text, "OWNER": owner, "GROUP": group, "MODE": mode},
        hide=True,
        label=f"write {path}",
    )
    return result.stdout.strip() == "changed"


def service_files(host: Host, group: str) -> list[Change]:
    """gunicorn.conf.py, the unit file (daemon-reload only if it changed), enable, logrotate."""
    settings = host.settings
    paths = layout(settings)
    name = host.app_user
    conf = write_file(
        host, paths.gunicorn_conf, render_gunicorn_conf(settings), owner=name, group=group
    )
    changes = [_say(host, Change("shared/gunicorn.conf.py", conf))]
    unit_path = unit_file(settings.app_name)
    unit = write_file(host, unit_path, render_unit(settings, name, group))
    web = roles.serves_web(settings, host.name)
    changes.append(_say(host, Change(unit_path, unit)))
    result = host.script(
        shell.shell("enable-service"),
        env={
            "UNIT_CHANGED": "yes" if unit else "no",
            "SERVICE": units.service_unit(settings),
            "WEB": "yes" if web else "no",
        },
        hide=True,
        label="enable service",
    )
    if unit:
        host.say("systemctl daemon-reload (the unit changed)")
    enabled = result.stdout.strip() == "changed"
    at_boot = "enabled at boot" if web else "disabled at boot (its roles run no web process)"
    changes.append(_say(host, Change(f"{units.service_unit(settings)} {at_boot}", enabled)))
    rotate_path = logrotate_file(settings.app_name)
    rotate = write_file(host, rotate_path, render_logrotate(settings, name, group))
    changes.append(_say(host, Change(rotate_path, rotate)))
    return changes


def shared_paths(host: Host) -> Change:
    """LINKED_DIRS and LINKED_FILES in shared/, owned by the app user, 0750/0640."""
    if not linked.configured(host):
        return _say(host, Change("linked paths", False, "no LINKED_DIRS or LINKED_FILES"))
    made = linked.apply(host)
    if made == "no change":  # name the paths, not "no change (no change)"
        paths = (*host.settings.linked_dirs, *host.settings.linked_files)
        return _say(host, Change("linked paths in shared/", False, ", ".join(paths)))
    return _say(host, Change("linked paths in shared/", True, made))


def process_units(host: Host, group: str) -> list[Change]:
    """The unit of each companion process the host's roles run; daemon-reload and enable."""
    settings = host.settings
    changes, written = [], []
    for name in roles.companions_of(settings, host.name):
        path = units.process_unit_path(settings, name)
        text = units.render_process_unit(settings, name, host.app_user, group)
        changed = write_file(host, path, text)
        written.append(units.unit_name(settings, name))
        changes.append(_say(host, Change(path, changed)))
    if not written:
        return changes
    result = host.script(
        shell.shell("enable-processes"),
        env={
            "CHANGED": "yes" if any(c.changed for c in changes) else "no",
            "UNITS": "\n".join(written),
        },
        hide=True,
        label="enable processes",
    )
    enabled = result.stdout.strip() not in ("", "0")
    changes.append(_say(host, Change(f"{', '.join(written)} enabled at boot", enabled)))
    return changes


def set_up(host: Host) -> list[Change]:
    """Every setup item on ``host``, in order; returns what changed. A Python that does not
    satisfy the app's Python requirement (`tasks.build.pyreq`) stops it after the packages."""
    changes = [system_packages(host)]
    pyreq.require_host(host.settings, host.name, changes[0].detail)
    change, group = app_user(host)
    changes += [change, directories(host, group), upload_secrets(host, group), shared_paths(host)]
    changes += service_files(host, group)
    changes += process_units(host, group)
    return changes


def running_keeps(host: Host, changes: list[Change]) -> None:
    """Say that the running processes keep the files setup just changed until a deploy."""
    files = ("secrets", "shared/gunicorn.conf.py", "/etc/systemd/system/")
    if any(c.changed and c.item.startswith(files) for c in changes):
        host.say(
            "if the web service or its processes run already, they keep the old files until "
            f"`{fab_command(host.settings, 'deploy')}` applies them (gracefully, also when the "
            "revision did not change); a first deploy starts them with these"
        )
