"""Stage setup: server packages, the app user, the directory layout and the unit file.

Every item checks the host first and changes it only when needed, reporting "changed" or
"no change" (a second ``fab setup`` prints "no change" for every item). Root actions use
``sudo -n``: passwordless sudo for the SSH user is a documented requirement.

Functions other modules compose:

- `prepare(host)` runs every item below in order and returns their `Change` list;
- `packages(host)`, `user(host)`, `directories(host, group)`, `secrets(host, group)`,
  `service(host, group)` are the items;
- `check(host)` verifies a host was set up and returns its `Facts` (Python identity and the
  wheel tags it accepts, learned in the same session, the release `current` points to), used
  by the deploy's ``check`` step;
- `render_unit`, `render_gunicorn_conf`, `render_logrotate` render the templates.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from string import Template

from invoke import Collection, task

from . import kv, linked, processes, pyreq, remote, roles, tags
from .config import Settings
from .errors import HostError
from .fleet import Run
from .layout import VENV_MARKER, Layout, logrotate_file, unit_file
from .pipeline import HOSTS, Step, execute
from .remote import Host
from .tags import TagSet

TEMPLATES = Path(__file__).resolve().parent / "templates"
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


@dataclass(frozen=True)
class Facts:
    """What the deploy needs to know about a prepared host."""

    python: str  # `python -VV` and platform: part of the venv hash
    python_version: str  # "3.11"
    current: str  # release `current` points to ("" when none)
    tags: TagSet  # the wheel tags the host's Python accepts: part of the venv hash
    revision: str = ""  # the revision of that release (its REVISION file)
    running: bool = False  # the gunicorn master in the pidfile is alive
    venvs: tuple[str, ...] = ()  # digests of the complete venvs on the host


def _say(host: Host, change: Change) -> Change:
    host.say(change.line())
    return change


# --- rendering -----------------------------------------------------------------------------


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
    paths = Layout(settings.deploy_root)
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
    paths = Layout(settings.deploy_root)
    return _template("app.service.in").substitute(
        app_name=settings.app_name,
        pidfile=_systemd_path(paths.pidfile),
        user=user,
        group=group,
        current=_systemd_path(paths.current),
        env_file=_systemd_path(paths.env_file),
        exec_start=" ".join(systemd_quote(word) for word in exec_start(settings)),
        timeout=max(30, settings.health_timeout + 10),
    )


def render_gunicorn_conf(settings: Settings) -> str:
    """The text of ``shared/gunicorn.conf.py`` (values as Python literals)."""
    paths = Layout(settings.deploy_root)
    return _template("gunicorn.conf.py.in").substitute(
        app_name=settings.app_name,
        app_name_py=repr(settings.app_name),
        env_file_text=paths.env_file,
        bind=repr(settings.bind),
        workers=settings.workers,
        pidfile=repr(paths.pidfile),
        current=repr(paths.current),
        error_log=repr(paths.error_log),
        access_log=repr(paths.access_log),
        graceful_timeout=max(10, settings.health_timeout),
        env_file=repr(paths.env_file),
        worker_class=repr(settings.worker_class),
        threads=settings.threads,
        timeout=settings.worker_timeout,
        max_requests=settings.max_requests,
        max_requests_jitter=settings.max_requests_jitter,
        own_config=repr(settings.gunicorn_config),
    )


def render_logrotate(settings: Settings, user: str, group: str) -> str:
    """The text of ``/etc/logrotate.d/<app>``: shared/log/*.log, copytruncate."""
    paths = Layout(settings.deploy_root)
    return _template("logrotate.in").substitute(
        app_name=settings.app_name,
        logs=paths.logs.replace('"', ""),
        user=user,
        group=group,
    )


# --- items ---------------------------------------------------------------------------------


def packages(host: Host) -> Change:
    """Install python3 and venv support with apt-get, only when ``PYTHON`` lacks them."""
    result = host.script(
        remote.shell("setup-packages"),
        env={"PYTHON": host.settings.python},
        hide=True,
        label="setup packages",
    )
    state, version = [*result.stdout.strip().splitlines(), "", ""][:2]
    return _say(host, Change("packages (python3, venv)", state == "changed", version))


def user(host: Host) -> tuple[Change, str]:
    """Create APP_USER (``useradd --system``) when missing; return it and its group."""
    name = host.app_user
    if not _USER.match(name):
        raise HostError(host.name, f"APP_USER {name!r} is not a valid user name")
    result = host.script(
        remote.shell("setup-user"),
        env={"APP_USER": name, "ROOT": host.settings.deploy_root},
        hide=True,
        label="setup user",
    )
    state, group = [*result.stdout.strip().splitlines(), "", ""][:2]
    return _say(host, Change(f"user {name}", state == "changed")), group


def directories(host: Host, group: str) -> Change:
    """The deploy root and its directories, owned by the app user (.incoming by the SSH user)."""
    paths = Layout(host.settings.deploy_root)
    owned = [paths.root, paths.releases, paths.venvs, paths.shared, paths.logs, paths.pids]
    result = host.script(
        remote.shell("setup-directories"),
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


def secrets(host: Host, group: str) -> Change:
    """Upload SECRETS_FILE to shared/.env (0600, app user) when its checksum differs."""
    settings = host.settings
    paths = Layout(settings.deploy_root)
    if settings.secrets.path is None:
        return _say(host, Change("secrets", False, "no SECRETS_FILE configured"))
    text = settings.secrets.render()
    digest = hashlib.sha256(text.encode()).hexdigest()
    names = ", ".join(settings.secrets.names())
    want = f"{digest} {host.app_user}:{group}:600"
    have = host.script(
        remote.shell("secrets-have"),
        env={"DEST": paths.env_file},
        hide=True,
        label="setup secrets",
    ).stdout.strip()
    if have == want:
        return _say(host, Change("secrets shared/.env", False, names))
    remote_tmp = host.script(remote.shell("secrets-tmp"), hide=True, label="mktemp").stdout.strip()
    fd, local_tmp = tempfile.mkstemp(prefix="fabdeploy-env-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        host.put(Path(local_tmp), remote_tmp, progress=False)
        host.script(
            remote.shell("secrets-install"),
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
        remote.shell("write-file"),
        env={"DEST": path, "TEXT": text, "OWNER": owner, "GROUP": group, "MODE": mode},
        hide=True,
        label=f"write {path}",
    )
    return result.stdout.strip() == "changed"


def service(host: Host, group: str) -> list[Change]:
    """gunicorn.conf.py, the unit file (daemon-reload only if it changed), enable, logrotate."""
    settings = host.settings
    paths = Layout(settings.deploy_root)
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
        remote.shell("enable-service"),
        env={
            "UNIT_CHANGED": "yes" if unit else "no",
            "SERVICE": settings.service,
            "WEB": "yes" if web else "no",
        },
        hide=True,
        label="enable service",
    )
    if unit:
        host.say("systemctl daemon-reload (the unit changed)")
    enabled = result.stdout.strip() == "changed"
    at_boot = "enabled at boot" if web else "disabled at boot (its roles run no web process)"
    changes.append(_say(host, Change(f"{settings.service} {at_boot}", enabled)))
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
        path = processes.unit_path(settings, name)
        text = processes.render_unit(settings, name, host.app_user, group)
        changed = write_file(host, path, text)
        written.append(settings.unit(name))
        changes.append(_say(host, Change(path, changed)))
    if not written:
        return changes
    result = host.script(
        remote.shell("enable-processes"),
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


def prepare(host: Host) -> list[Change]:
    """Every setup item on ``host``, in order; returns what changed. A Python that does not
    satisfy the app's Python requirement (`tasks.pyreq`) stops it after the packages."""
    changes = [packages(host)]
    pyreq.require_host(host.settings, host.name, changes[0].detail)
    change, group = user(host)
    changes += [change, directories(host, group), secrets(host, group), shared_paths(host)]
    changes += service(host, group)
    changes += process_units(host, group)
    return changes


def facts_program(host: Host) -> tuple[str, dict[str, object]]:
    """The script (``scripts/facts.sh``) and env that learn a host's `Facts`."""
    settings = host.settings
    paths = Layout(settings.deploy_root)
    facts_py, host_tags = remote.script_file("facts.py"), tags.script_text()
    return remote.shell("facts"), {
        "RELEASES": paths.releases,
        "VENVS": paths.venvs,
        "SHARED": paths.shared,
        "INCOMING": paths.incoming,
        "UNIT": unit_file(settings.app_name),
        "CONF": paths.gunicorn_conf,
        "PYTHON": settings.python,
        "CURRENT": paths.current,
        "PIDFILE": paths.pidfile,
        "SETUP": settings.command("setup"),
        "MARKER": VENV_MARKER,
        "HOST_TAGS": host_tags,
        "FACTS_PY": facts_py,
        "FACTS_KEY": hashlib.sha256(
            f"{settings.python}\0{facts_py}\0{host_tags}".encode()
        ).hexdigest()[:16],
    }


def check(host: Host) -> Facts:
    """Refuse a host that was not set up; return its Python identity and current release."""
    body, env = facts_program(host)
    return parse_facts(host, host.script(body, env=env, hide=True, label="check").stdout)


def parse_facts(host: Host, text: str) -> Facts:
    """The `Facts` in the output of ``scripts/facts.sh``."""
    lines = text.strip().splitlines()
    if len(lines) < 3:
        raise HostError(host.name, f"check: unexpected answer {text!r}")
    identity, version = lines[0].strip() + " " + lines[1].strip(), lines[2].strip()
    rest = "\n".join(lines[3:])
    found = kv.parse(rest)
    try:
        host_tags = tags.parse(found.get("tags", ""))
    except ValueError as exc:
        raise HostError(
            host.name, f"check: cannot learn the wheel tags of {host.settings.python}: {exc}"
        ) from None
    return Facts(
        python=identity,
        python_version=version,
        current=found.get("current", ""),
        tags=host_tags,
        revision=found.get("revision", ""),
        running=found.get("running") == "yes",
        venvs=tuple(line[5:] for line in lines[3:] if line.startswith("venv=")),
    )


# --- tasks ---------------------------------------------------------------------------------


def running_keeps(host: Host, changes: list[Change]) -> None:
    """Say that the running processes keep the files setup just changed until a deploy."""
    files = ("secrets", "shared/gunicorn.conf.py", "/etc/systemd/system/")
    if any(c.changed and c.item.startswith(files) for c in changes):
        host.say(
            "if the web service or its processes run already, they keep the old files until "
            f"`{host.settings.command('deploy')}` applies them (gracefully, also when the "
            "revision did not change); a first deploy starts them with these"
        )


def prepare_step(run_: Run, host: Host) -> None:
    """Packages, the app user, directories, secrets, linked paths and units, as needed."""
    running_keeps(host, prepare(host))


#: ``fab setup``: one step on every host, with the before_setup and after_setup hooks.
SETUP = (Step("setup", prepare_step, HOSTS),)


@task(name="all")
def all_(c):  # type: ignore[no-untyped-def]
    """Prepare hosts: packages, user, directories, secrets, unit file (idempotent)."""
    settings, hosts = remote.session(c)
    if not hosts:
        return
    try:
        execute(Run(c, settings, hosts, "setup"), SETUP)
    finally:
        for host in hosts:
            host.close()


@task(name="packages")
def packages_(c):  # type: ignore[no-untyped-def]
    """Install the remote Python and venv support when missing."""
    remote.on_each_host(c, "setup.packages", packages)


@task
def layout(c):  # type: ignore[no-untyped-def]
    """Create the app user and the deploy root (releases/, venvs/, shared/), upload secrets."""

    def work(host: Host) -> None:
        _, group = user(host)
        directories(host, group)
        running_keeps(host, [secrets(host, group)])
        shared_paths(host)

    remote.on_each_host(c, "setup", work)


@task(name="service")
def service_(c):  # type: ignore[no-untyped-def]
    """Install the systemd unit, gunicorn's config and log rotation for the app."""

    def work(host: Host) -> None:
        _, group = user(host)
        running_keeps(host, service(host, group) + process_units(host, group))

    remote.on_each_host(c, "setup", work)


ns = Collection("setup")
ns.add_task(all_, default=True)
ns.add_task(packages_)
ns.add_task(layout)
ns.add_task(service_)
