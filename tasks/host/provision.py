"""Setup's items on a host: server packages, the app user, the directory layout, the
secrets and the unit files (``fab setup``: `tasks.steps.lists.SETUP`).

Every item checks the host first and changes it only when needed, reporting "changed" or
"no change" (a second ``fab setup`` prints "no change" for every item). Root actions use
``sudo -n``, each one a line of the sudoers rule (`tasks.host.sudoers`, docs/security.md#sudo).

The layout is the ownership model (docs/security.md#ownership): the deploy user (the SSH
user) owns the code side of the deploy root, root owns /etc/<app> (the secrets and
gunicorn.conf.py, readable by the app's group) and the units, the app user (APP_USER, by
default a system user named APP_NAME) owns only its data, its logs and /run/<app>. Root
writes files as a temp file beside them, the content through stdin, renamed into place, and
never acts through a directory the app user can write. A host laid out by an older fabdeploy
(the secrets and gunicorn.conf.py in shared/, the tree the app user's) is migrated by
`set_up`: `survey` finds it, the app's services stop, the paths are handed over and the old
files moved (`directories`), and the services start again on the new units.

Functions other modules compose:

- `set_up(host)` runs every item below in order and returns their `Change` list;
- `system_packages(host)`, `app_user(host)`, `directories(host, group)`,
  `upload_secrets(host, group)`, `shared_paths(host)`, `service_files(host, group)`,
  `process_units(host, group)` are the items; `survey(host, group)` what a migration moves;
- `running_keeps(host, changes)` says what the running processes keep until a deploy;
- `deploy_user_warning(host)` the warning when the app runs as the SSH user.

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
from ..core.errors import FabdeployError, HostError
from ..core.paths import layout, logrotate_file, unit_file
from . import converge, linked, processes, service, units
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


def deploy_user_warning(host: Host) -> str:
    """The warning when the app runs as the SSH user (APP_USER set to it: the explicit
    opt-in), "" otherwise."""
    if not host.app_is_deploy_user:
        return ""
    return (
        f"the app runs as the SSH user {host.app_user}, who has sudo: a compromised app is root "
        "on the host (docs/security.md#ownership)"
    )


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
    warning = deploy_user_warning(host)
    detail = f"WARNING: {warning}" if warning else f"the app's own; {host.conn.user} deploys"
    return _say(host, Change(f"user {name}", state == "changed", detail)), group


@dataclass(frozen=True)
class Survey:
    """What setup's `directories` would hand over or move on a host (a migration from an older
    fabdeploy's layout, or another APP_USER), and the app's units running there."""

    moves: tuple[str, ...] = ()  # "<path>: <owner> -> <owner>", or an older file's move
    active: tuple[str, ...] = ()  # the units of UNITS that are running

    def __bool__(self) -> bool:
        """Whether anything that exists changes owner or moves (the services stop for it)."""
        return bool(self.moves)


def _layout_env(host: Host, group: str, mode: str) -> dict[str, object]:
    """The env of ``scripts/setup-directories.sh`` (``mode`` survey or apply)."""
    settings = host.settings
    paths = layout(settings)
    data = [f"{paths.shared}/{p}" for p in (*settings.linked_dirs, *settings.linked_files)]
    running = app_units(host)
    return {
        "MODE": mode,
        "APP_USER": host.app_user,
        "GROUP": group,
        "ETC": paths.etc,
        "ENV_FILE": paths.env_file,
        "ROOT": paths.root,
        "RELEASES": paths.releases,
        "VENVS": paths.venvs,
        "SHARED": paths.shared,
        "INCOMING": paths.incoming,
        "SWITCH": paths.switch_runs,
        "CURRENT": paths.current,
        "CURRENT_TMP": paths.current_tmp,
        "LOCK": paths.lock,
        "REVLOG": paths.revisions_log,
        "LOGS": paths.logs,
        "DATA": "\n".join(data),
        "LEGACY_ENV": paths.legacy_env_file,
        "LEGACY_CONF": paths.legacy_gunicorn_conf,
        "LEGACY_PIDS": paths.legacy_pids,
        "KEEP_ENV": "no" if settings.secrets.path else "yes",
        "UNITS": "\n".join(running),
    }


def app_units(host: Host) -> list[str]:
    """The app's units on ``host``: the web service and every companion process's."""
    settings = host.settings
    return [units.service_unit(settings), *processes.units_of(host)]


def survey(host: Host, group: str) -> Survey:
    """What `directories` would hand over or move on ``host``, changing nothing; refuses an
    /etc/<APP_NAME> that holds another software's files."""
    result = host.script(
        shell.shell("setup-directories"),
        env=_layout_env(host, group, "survey"),
        hide=True,
        warn=True,
        label="setup survey",
    )
    if result.failed:
        why = host.output.clean(result.stderr.strip()) or f"exit {result.exited}"
        raise HostError(host.name, f"setup directories: {why}")
    moves, active = [], []
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key == "migrate":
            moves.append(value)
        elif key == "active":
            active.append(value)
    return Survey(tuple(moves), tuple(active))


def directories(host: Host, group: str, *, each: bool = False) -> Change:
    """The ownership model's paths (docs/security.md#ownership): the deploy root (the SSH
    user's, the app's group may enter), releases/, venvs/, shared/, .incoming/, .switch/ (the
    SSH user's), shared/log (the app user's) and /etc/<app> (root's, the app's group may
    read); what exists with another owner handed over, an older fabdeploy's files moved
    (``each``: each change said, as a migration does)."""
    paths = layout(host.settings)
    result = host.script(
        shell.shell("setup-directories"),
        env=_layout_env(host, group, "apply"),
        hide=True,
        label="setup directories",
    )
    lines = result.stdout.strip().splitlines()
    if lines[:1] != ["changed"]:
        return _say(host, Change("directories", False, f"{paths.root}, {paths.etc}"))
    for line in lines[1:] if each else ():
        host.say(f"  {line}")
    return _say(host, Change("directories", True, f"{len(lines) - 1} made, fixed or moved"))


def upload_secrets(host: Host, group: str) -> Change:
    """Upload SECRETS_FILE to /etc/<app>/env (root : the app's group, 0640) when its checksum
    differs."""
    settings = host.settings
    paths = layout(settings)
    item = f"secrets {paths.env_file}"
    if settings.secrets.path is None:
        return _say(host, Change("secrets", False, "no SECRETS_FILE configured"))
    text = settings.secrets.render()
    digest = hashlib.sha256(text.encode()).hexdigest()
    names = ", ".join(settings.secrets.names())
    want = f"{digest} root:{group}:640"
    have = host.script(
        shell.shell("secrets-have"),
        env={"DEST": paths.env_file},
        hide=True,
        label="setup secrets",
    ).stdout.strip()
    if have == want:
        return _say(host, Change(item, False, names))
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
                "GROUP": group,
                "DIGEST": digest,
            },
            hide=True,
            label="upload secrets",
        )
    finally:
        os.unlink(local_tmp)
    return _say(host, Change(item, True, names))


def write_file(
    host: Host, path: str, text: str, *, owner: str = "root", group: str = "root", mode: str = "644"
) -> bool:
    """Write ``text`` to ``path`` as root, only when content or owner/mode differ (read by
    sudo in /etc/<app>, which the SSH user may not read; elsewhere as the SSH user)."""
    private = path.startswith(layout(host.settings).etc + "/")
    result = host.script(
        shell.shell("write-file"),
        env={
            "DEST": path,
            "TEXT": text,
            "OWNER": owner,
            "GROUP": group,
            "MODE": mode,
            "PRIVATE": "yes" if private else "no",
        },
        hide=True,
        label=f"write {path}",
    )
    return result.stdout.strip() == "changed"


def service_files(host: Host, group: str) -> list[Change]:
    """gunicorn.conf.py (root : the app's group, 0640, in /etc/<app>), the unit file
    (daemon-reload only if it changed), enable, logrotate."""
    settings = host.settings
    paths = layout(settings)
    name = host.app_user
    conf = write_file(
        host, paths.gunicorn_conf, render_gunicorn_conf(settings), group=group, mode="640"
    )
    changes = [_say(host, Change(paths.gunicorn_conf, conf))]
    if settings.app_env:  # the app's settings (ENV_<NAME>); a deploy keeps them in step too
        made = converge.settings_target(settings, group)
        written = write_file(host, made.path, made.text, group=group, mode=made.mode)
        changes.append(_say(host, Change(f"settings {made.path}", written)))
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
    """LINKED_DIRS and LINKED_FILES in shared/, the app user's, 0750/0640."""
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
    satisfy the app's Python requirement (`tasks.build.pyreq`) stops it after the packages.
    A layout to migrate (`survey`) stops the app's running units first and starts them again
    at the end, on the new units (their user and paths change: a USR2 cannot apply that)."""
    changes = [system_packages(host)]
    pyreq.require_host(host.settings, host.name, changes[0].detail)
    change, group = app_user(host)
    changes.append(change)
    moving = survey(host, group)
    stopped = moving.active if moving else ()
    if moving:
        host.say(
            f"migrating to the ownership model (docs/security.md#ownership): {len(moving.moves)} "
            f"path(s) change owner or move"
            + (f"; stopping {', '.join(moving.active)} meanwhile" if moving.active else "")
        )
        for line in moving.moves:
            host.say(f"  {line}")
        stop_units(host, stopped)
    try:
        changes.append(directories(host, group, each=bool(moving)))
        changes += [upload_secrets(host, group), shared_paths(host)]
        changes += service_files(host, group)
        changes += process_units(host, group)
    except BaseException:
        if stopped:  # whatever stopped, back up as far as it goes; the error stands
            try:
                start_units(host, stopped)
            except FabdeployError as exc:
                host.output.line(host.name, f"starting {', '.join(stopped)} again: {exc}", err=True)  # fmt: skip
        raise
    if stopped:
        start_units(host, stopped)
        changes.append(Change(RESTARTED, True, ", ".join(stopped)))  # (said by start_units)
    return changes


def stop_units(host: Host, active: tuple[str, ...]) -> None:
    """Stop the app's running units ``active`` (the companion processes gracefully)."""
    web = units.service_unit(host.settings)
    if web in active:
        service.stop(host)
    for name in companions_in(host, active):
        processes.control(host, "stop", name)


def start_units(host: Host, active: tuple[str, ...]) -> None:
    """Start again the units `stop_units` stopped: the web service through the switch's start
    (health-checked), each companion process checked to stay up."""
    if units.service_unit(host.settings) in active:
        service.switch(host)
    for name in companions_in(host, active):
        processes.control(host, "start", name)
    host.say(f"started again on the new units: {', '.join(active)}")


def companions_in(host: Host, active: tuple[str, ...]) -> list[str]:
    """The companion processes of ``host`` whose unit is among ``active``."""
    settings = host.settings
    return [
        name
        for name in roles.companions_of(settings, host.name)
        if units.unit_name(settings, name) in active
    ]


def refuse_migration(host: Host, group: str) -> None:
    """Stop a partial setup (``setup.layout``, ``setup.service``) on a host to migrate: only
    the whole ``fab setup`` stops and starts the services around it."""
    if survey(host, group):
        raise HostError(
            host.name,
            "laid out by an older fabdeploy (or for another APP_USER): run "
            f"`{fab_command(host.settings, 'setup')}`, which migrates it "
            "(docs/security.md#ownership)",
        )


#: The item `set_up` adds when a migration restarted the app's units onto the new files.
RESTARTED = "restarted on the new units"


def running_keeps(host: Host, changes: list[Change]) -> None:
    """Say that the running processes keep the files setup just changed until a deploy
    (nothing when a migration restarted them on these files)."""
    paths = layout(host.settings)
    files = ("secrets", "settings", paths.gunicorn_conf, "/etc/systemd/system/")
    if any(c.item == RESTARTED for c in changes):
        return
    if any(c.changed and c.item.startswith(files) for c in changes):
        host.say(
            "if the web service or its processes run already, they keep the old files until "
            f"`{fab_command(host.settings, 'deploy')}` applies them (gracefully, also when the "
            "revision did not change); a first deploy starts them with these"
        )
