"""What setup owns on a host, kept in step by every deploy: the web unit, /etc/<app>/gunicorn.conf.py,
the app's settings (/etc/<app>/settings, the ``ENV_<NAME>`` keys: written when the app has
some or the host has the file), the secrets file (/etc/<app>/env) and the companion processes'
units: every one root's, in a root-owned directory (docs/security.md#ownership).

The deploy's lock learns them in its session (`program`, ``scripts/plan.sh``: the files'
texts, the secrets file's digest, never its values, and which running process started
before a file it reads last changed); `drift` compares them with what setup would write now
(setup's own renderers). What differs is staged with the release (`stage`: a private
directory of the SSH user, not yet live) and put in place on each host just before its
switch (``scripts/converge.sh`` runs first in the switch's body), so the new gunicorn master
of the USR2 re-exec reads the new files and the switch stays health-gated and zero-downtime;
the companion processes restart onto them after the switch, as every deploy restarts them.
A switch that fails puts the old files back before the old master takes the requests back.

What a running service keeps until it restarts (the unit's user, command, paths; the bind
address) is never applied by a deploy: `drift` refuses it with the commands to run, before
any host changes. ``fab plan`` shows the same drift.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import roles
from ..config.project import fab_command
from ..core import kv, sandbox, secretsfile, shell
from ..core.errors import HostError
from ..core.paths import layout, unit_file
from . import units as host_units
from .units import render_gunicorn_conf, render_unit

if TYPE_CHECKING:
    from ..config import Settings
    from ..ssh.host import Host


#: Lines of the web unit and gunicorn.conf.py a running service keeps until it restarts: a
#: USR2 re-exec inherits the master's user, command line and listening sockets.
RESTART_ONLY = ("User=", "Group=", "PIDFile=", "RuntimeDirectory", "WorkingDirectory=",
                "ExecStart=", "bind =", "pidfile =")  # fmt: skip


#: The suffix of a file's copy kept while the deploy runs (converge.sh).
KEPT = ".fabdeploy-old"

#: The settings file's name in /etc/<app> (`tasks.core.paths.Layout.settings_file`).
SETTINGS_NAME = "settings"


@dataclass(frozen=True)
class OnHost:
    """Setup's files as a host has them (``scripts/plan.sh``)."""

    group: str  # the app user's group ("" when the user is missing)
    files: dict[str, str | None]  # path -> text (None: missing)
    secrets: str = ""  # "<sha256> <user>:<group>:<mode>" of the secrets file ("" none)
    secret_names: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()  # "web", or a process unit's file: started before a change


@dataclass(frozen=True)
class Target:
    """A file setup writes, as it would write it now."""

    path: str
    text: str
    owner: str = "root"
    group: str = "root"
    mode: str = "644"


@dataclass
class Drift:
    """What a deploy puts in place on one host with its switch."""

    files: list[Target] = field(default_factory=list)  # to install (secrets included)
    had: dict[str, bool] = field(default_factory=dict)  # path -> the host had the file
    stale: tuple[str, ...] = ()  # processes running on older files (a switch reloads them)
    secrets: bool = False  # the secrets file is among the files
    new_secrets: bool = False  # ... with other values (not only another owner or mode)
    settings: list[str] = field(default_factory=list)  # the app settings' changes, in clear
    stage: str = ""  # where `stage` put the files on the host
    applied: bool = False  # the files are in place (the switch took them)

    def __bool__(self) -> bool:
        """Whether the deploy has anything to converge here."""
        return bool(self.files or self.stale)

    def describe(self) -> str:
        """What changes, in a few words (names and paths, never secret values)."""
        what = [Path(t.path).name for t in self.files]
        if self.secrets:
            what[-1] = "the secrets"  # appended last by `drift`
        told = f"the settings ({', '.join(self.settings)})" if self.settings else "the settings"
        what = [told if name == SETTINGS_NAME else name for name in what]
        what += [f"{Path(s).name} started before its files changed" for s in self.stale]
        return ", ".join(what)

    def secrets_note(self, settings: Settings) -> str:
        """When the secrets' values change: what runs before the switch still has the old
        ones, and how to give it the new ones ("" otherwise)."""
        if not self.new_secrets:
            return ""
        return (
            "the new secrets take effect with the switch: this deploy's hooks, migration and "
            "smoke check run with the ones the host has; if they need the new values, stop and "
            f"run `{fab_command(settings, 'setup')}` first (docs/security.md#secrets)"
        )


def program(host: Host) -> tuple[str, dict[str, object]]:
    """The script (``scripts/plan.sh``) and env that read setup's files on ``host``."""
    settings = host.settings
    paths = layout(settings)
    units = [host_units.process_unit_path(settings, name) for name in roles.companions_of(settings, host.name)]  # fmt: skip
    return shell.shell("plan"), {
        "UNIT": unit_file(settings.app_name),
        "CONF": paths.gunicorn_conf,
        "ENV_FILE": paths.env_file,
        "SETTINGS": paths.settings_file,
        "APP_USER": host.app_user,
        "PIDFILE": paths.pidfile,
        "PROCESS_UNITS": "\n".join(units),
    }


def parse(text: str) -> OnHost:
    """The `OnHost` in the output of ``scripts/plan.sh``."""
    files: dict[str, str | None] = {}
    names, stale = [], []
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "file":
            path, _, data = value.rpartition(" ")
            try:
                files[path] = None if data == "-" else base64.b64decode(data).decode()
            except (binascii.Error, UnicodeDecodeError):
                files[path] = ""  # unreadable as text: differs from anything setup writes
        elif key == "secret":
            names.append(value)
        elif key == "stale":
            stale.append(value)
    found = kv.parse(text)
    return OnHost(found.get("group", ""), files, found.get("secrets", ""), tuple(names), tuple(stale))  # fmt: skip


def read(host: Host) -> OnHost:
    """Setup's files on ``host`` (one round trip; the deploy learns them with its lock)."""
    body, env = program(host)
    return parse(host.script(body, env=env, hide=True, label="read setup's files").stdout)


def targets(host: Host, group: str, has_settings: bool = False) -> list[Target]:
    """The files setup writes on ``host`` (the secrets file apart), as it would write them;
    the settings file when the app has settings or the host has the file (``has_settings``:
    then emptied of those removed)."""
    settings, user = host.settings, host.app_user
    conf = render_gunicorn_conf(settings)
    found = [
        Target(unit_file(settings.app_name), render_unit(settings, user, group)),
        Target(layout(settings).gunicorn_conf, conf, "root", group, "640"),
    ]
    for name in roles.companions_of(settings, host.name):
        text = host_units.render_process_unit(settings, name, user, group)
        found.append(Target(host_units.process_unit_path(settings, name), text))
    if settings.app_env or has_settings:
        found.append(settings_target(settings, group))
    return found


def settings_target(settings: Settings, group: str) -> Target:
    """The app's settings file (``ENV_<NAME>``: the secrets file's format, values in clear)."""
    text = secretsfile.render(settings.app_env)
    return Target(layout(settings).settings_file, text, "root", group, "640")


def settings_changes(have: str | None, settings: Settings) -> list[str]:
    """What a deploy changes in the app's settings on a host whose file holds ``have`` (None:
    no file): ``NAME=value`` added, ``NAME: old -> new``, ``NAME removed``, in clear."""
    old = secretsfile.parse(have or "")
    new = settings.app_env
    found = [f"{name}={value}" for name, value in new.items() if name not in old]
    found += [f"{name}: {old[name]} -> {value}" for name, value in new.items() if name in old and old[name] != value]  # fmt: skip
    return found + [f"{name} removed" for name in old if name not in new]


def secrets_target(host: Host, group: str) -> tuple[Target, str] | None:
    """The secrets file as setup uploads it, and its ``<sha256> root:<group>:640``."""
    settings = host.settings
    if settings.secrets.path is None:
        return None
    text = settings.secrets.render()
    digest = hashlib.sha256(text.encode()).hexdigest()
    path = layout(settings).env_file
    return Target(path, text, "root", group, "640"), f"{digest} root:{group}:640"


def restart_only(have: str, want: str) -> list[str]:
    """The lines of a change a running service keeps until it restarts: `RESTART_ONLY`, and
    the sandbox's directives, added or removed (`tasks.core.sandbox.NAMES`: a USR2 re-exec
    inherits the master's namespaces, so a new writable path waits for a restart too)."""
    sandboxed = tuple(f"{name}=" for name in sandbox.NAMES)
    changed = list(difflib.ndiff(have.splitlines(), want.splitlines()))
    added = [line[2:] for line in changed if line[:2] == "+ "]
    removed = [line[2:] for line in changed if line[:2] == "- "]
    return [line for line in added if line.startswith(RESTART_ONLY + sandboxed)] + [
        line for line in removed if line.startswith(sandboxed)
    ]


def drift(host: Host, found: OnHost) -> Drift:
    """What differs between setup's files on ``host`` and what setup would write now.

    Raises `HostError` naming the commands to run when a change needs the service restarted
    (or the app user created): a deploy never applies that part, and changes nothing."""
    group = found.group or host.app_user
    result = Drift(stale=found.stale)
    has_settings = found.files.get(layout(host.settings).settings_file) is not None
    for target in targets(host, group, has_settings):
        have = found.files.get(target.path)
        if have == target.text:
            continue
        if not found.group:
            refuse(host, f"APP_USER {host.app_user} does not exist on the host")
        is_settings = target.path == layout(host.settings).settings_file
        lines = restart_only(have or "", target.text) if have is not None and not is_settings else []  # fmt: skip
        if lines:
            refuse(
                host,
                f"{target.path} would change `{lines[0]}`, which the running service keeps until it restarts",
            )
        result.files.append(target)
        result.had[target.path] = have is not None
        if is_settings:
            result.settings = settings_changes(have, host.settings)
    secrets = secrets_target(host, group)
    if secrets and found.secrets != secrets[1]:
        result.files.append(secrets[0])
        result.had[secrets[0].path] = bool(found.secrets)
        result.secrets = True
        result.new_secrets = found.secrets.partition(" ")[0] != secrets[1].partition(" ")[0]
    return result


def refuse(host: Host, why: str) -> None:
    """Stop the deploy (no host changed yet) saying ``why`` and the commands to run."""
    settings = host.settings
    raise HostError(
        host.name,
        f"{why}, so deploy does not apply it and changed nothing: run "
        f"`{fab_command(settings, 'setup')}`, then `{fab_command(settings, 'run.restart --process all')}` "
        "(a short outage), then deploy again",
    )


def stage(host: Host, found: Drift) -> None:
    """Upload the files of ``found`` to a private directory of the SSH user (not yet live;
    ``scripts/converge.sh`` pipes each into place as root)."""
    if not found.files:
        return
    made = host.script(
        shell.shell("secrets-tmp"), env={"DIRECTORY": "yes"}, hide=True, label="stage"
    )
    found.stage = made.stdout.strip()
    with tempfile.TemporaryDirectory(prefix="fabdeploy-stage-") as local:
        for number, target in enumerate(found.files, 1):
            path = Path(local) / str(number)
            path.write_text(target.text, encoding="utf-8")
            os.chmod(path, 0o600)
            host.put(path, f"{found.stage}/{number}", progress=False)


def script(host: Host, found: Drift, mode: str) -> tuple[str, dict[str, object]]:
    """``scripts/converge.sh`` (without lib.sh) and its env on ``host``, for ``mode`` apply,
    back or forget."""
    settings = host.settings
    units = {
        host_units.unit_name(settings, name) for name in roles.companions_of(settings, host.name)
    }
    return script_for(found, mode, host.app_user, units)


def script_for(
    found: Drift, mode: str, app_user: str, companions: set[str]
) -> tuple[str, dict[str, object]]:
    """`script` for an app user and the companion units (a new one is enabled at boot)."""
    units = [Path(t.path).name for t in found.files if t.path.endswith(".service")]
    enable = [u for u in units if u in companions and not found.had.get(f"/etc/systemd/system/{u}")]  # fmt: skip
    rows = [
        "\t".join((t.path, t.owner, t.group, t.mode, "yes" if found.had.get(t.path) else "no"))
        for t in found.files
    ]
    return shell.script_file("converge.sh"), {
        "MODE": mode,
        "STAGE": found.stage,
        "FILES": "\n".join(rows),
        "APP_USER": app_user,
        "RELOAD": "yes" if units else "no",
        "ENABLE": "\n".join(enable),
    }


def change_files(host: Host, found: Drift, mode: str) -> None:
    """Change setup's files on ``host`` by ``scripts/converge.sh`` on its own (``mode`` apply
    or back, on a host without the web process; forget), not in a switch's body."""
    body, env = script(host, found, mode)
    host.script(shell.library() + "\n" + body, env=env, hide=True, label=f"setup's files ({mode})")  # fmt: skip
    if mode == "apply":
        found.applied = True
        host.say(f"setup's files in place: {found.describe()}")


def discard(host: Host, found: Drift) -> None:
    """Remove the staged files of a deploy that did not switch (nothing was live)."""
    if found.stage and not found.applied:
        host.script(shell.shell("remove-work"), env={"WORK": found.stage}, hide=True, label="unstage")  # fmt: skip
        found.stage = ""
