"""The sudo rights fabdeploy needs on a host, declared once (docs/security.md#sudo).

Every command the remote scripts run as root is one `Right`: the command line exactly as sudo
matches it (the absolute path Debian has, then the arguments), a sudo wildcard only where a
value truly varies (`Glob`: ``journalctl -n N``). The scripts run these lines and no others
(tests/unit/test_sudoers.py runs them under a sudo that refuses any other); acting as the app
user is one more rule, ``<ssh user> ALL=(<APP_USER>) NOPASSWD: ALL``, which is less privilege
than the SSH user's own, not more.

- `rights(settings, ssh_user, group)`: every right, each with what uses it (`Right.use`);
- `render(settings, users)`: the sudoers file ``fab <env> setup.sudoers`` prints, the rights
  split into a day-to-day alias (`DAILY`) and a setup alias (`SETUP_ONLY`);
- `probes(host)`: what ``scripts/facts.sh`` asks the host with ``sudo -n -l`` in the check's
  round trip (`probe_env`); `missing(host, refused, command, files)` the rights a command
  needs (`NEEDS`) that sudo refused, `refusal` the lines to add.

The app user's group is the name of the app user (``useradd --user-group`` makes it so; an
existing APP_USER's primary group is assumed to have its name, as Debian's ``adduser`` makes
it). On a host, facts.sh learns the real group (`APP_GROUP` stands for it in the probes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import roles
from ..config.project import fab_command
from ..core.clock import STAT_FORMAT
from ..core.paths import layout, logrotate_file, unit_file
from . import processes, units

if TYPE_CHECKING:
    from ..config import Settings
    from ..ssh.host import Host
    from .facts import Facts


#: What a right is for. The day-to-day ones:
READ = "read"  # setup's files in /etc/<app>, read by every lock's session and by `fab check`
SERVE = "serve"  # the switch's start or stop, the companion processes' restart (deploy, rollback)
RUN = "run"  # run.start, run.stop, run.restart
LOGS = "logs"  # fab logs (-n up to `MAX_LOG_LINES`, --follow)
PORT = "port"  # fab check: who holds BIND's port
#: Those of setup (as good as root: they write the units):
SETUP = "setup"  # fab setup only
CONVERGE = "converge"  # setup's files put in place: by fab setup, and by a deploy that changes them

#: The uses of each alias, in the file's order.
DAILY = (READ, SERVE, RUN, LOGS, PORT)
SETUP_ONLY = (SETUP, CONVERGE)

#: The uses each command's check asks the host for (a deploy adds the CONVERGE rights of the
#: files it changes: `missing`'s ``files``).
NEEDS = {
    "check": (READ, SERVE, PORT),
    "deploy": (READ, SERVE),
    "rollback": (READ, SERVE),
    "release": (READ,),
    "converge": (CONVERGE,),  # every setup file a deploy may change (`fab check` warns)
}

#: The most lines `fab logs -n` may ask for under the rule (the digits `journal_lines` allows).
MAX_LOG_LINES = 999

#: Stands for the app user's group in a probe: ``scripts/facts.sh`` puts the group in.
APP_GROUP = "@APP_GROUP@"

#: Where Debian has each command a script runs as root (sudo matches the absolute path).
PATHS = {
    "apt-get": "/usr/bin/apt-get",
    "cat": "/usr/bin/cat",
    "chmod": "/usr/bin/chmod",
    "chown": "/usr/bin/chown",
    "cp": "/usr/bin/cp",
    "cut": "/usr/bin/cut",
    "env": "/usr/bin/env",
    "install": "/usr/bin/install",
    "journalctl": "/usr/bin/journalctl",
    "ls": "/usr/bin/ls",
    "mkdir": "/usr/bin/mkdir",
    "mv": "/usr/bin/mv",
    "rm": "/usr/bin/rm",
    "sha256sum": "/usr/bin/sha256sum",
    "ss": "/usr/bin/ss",
    "stat": "/usr/bin/stat",
    "systemctl": "/usr/bin/systemctl",
    "useradd": "/usr/sbin/useradd",
}

#: The one form of `stat` the scripts read a root file's owner, mode and mtime with.
STAT = ("-c", STAT_FORMAT, "--")

#: The suffixes of setup's files while they change (write-file.sh, converge.sh).
NEW, OLD = ".fabdeploy-new", ".fabdeploy-old"


@dataclass(frozen=True)
class Glob:
    """A word sudo matches as a pattern, since its value varies; ``sample`` is one value that
    fits it, for ``sudo -n -l``."""

    pattern: str
    sample: str


@dataclass(frozen=True)
class Right:
    """One command line the SSH user may run as root, and what uses it.

    ``about`` names the units or files it acts on (a host needs it only when it runs the unit
    or has the file; empty: every host)."""

    command: str  # the name the scripts run it by (`PATHS` has its absolute path)
    args: tuple[str | Glob, ...]
    use: str
    about: frozenset[str] = frozenset()

    def line(self) -> str:
        """The command as a sudoers line spells it."""
        words = [PATHS[self.command], *(sudoers_word(word) for word in self.args)]
        return " ".join(words)

    def probe(self) -> tuple[str, ...]:
        """The command line ``sudo -n -l`` is asked about (each `Glob` its sample)."""
        return (self.command, *(w.sample if isinstance(w, Glob) else w for w in self.args))


def sudoers_word(word: str | Glob) -> str:
    """One argument as a sudoers line matches it literally (a `Glob` as its pattern)."""
    if isinstance(word, Glob):
        return word.pattern
    if not word or word != word.strip() or "  " in word or re.search(r'[\\"\t\n]', word):
        raise ValueError(f"a sudoers argument cannot be {word!r}")
    return re.sub(r"([,:=#*?\[\]])", r"\\\1", word)


def alias(settings: Settings, use: str) -> str:
    """The name of the alias holding the rights of ``use`` (``HELLO_DEPLOY``, ``HELLO_SETUP``)."""
    prefix = re.sub(r"[^A-Z0-9]", "_", settings.app_name.upper())
    return f"{prefix}_{'DEPLOY' if use in DAILY else 'SETUP'}"


def file_name(settings: Settings) -> str:
    """Where the rule goes on a host (sudo reads no file in sudoers.d whose name has a dot)."""
    return f"/etc/sudoers.d/fabdeploy-{settings.app_name}"


def app_group(settings: Settings) -> str:
    """The app user's group as the rule names it: its name (see the module doc)."""
    return settings.app_user


def journal_lines() -> list[Glob]:
    """``-n N`` of `fab logs`: one pattern per number of digits, up to `MAX_LOG_LINES`."""
    digits = len(str(MAX_LOG_LINES))
    return [Glob("[0-9]" * n, "5" * n) for n in range(1, digits + 1)]


def daily(settings: Settings) -> list[Right]:
    """The rights of deploy, rollback, run.*, logs, status, health, exec, cleanup and check."""
    return [*reads(settings), *serving(settings), *running(settings), *journals(settings),
            Right("ss", ("-Hltnp", f"( sport = :{settings.port} )"), PORT)]  # fmt: skip


def reads(settings: Settings) -> list[Right]:
    """/etc/<app>'s files, which only root and the app's group may read: gunicorn.conf.py's
    and the settings' text, the secrets' digest and names (never their values)."""
    paths = layout(settings)
    conf, env, app_settings = paths.gunicorn_conf, paths.env_file, paths.settings_file
    about = frozenset({app_settings})
    return [
        Right("stat", (*STAT, conf), READ),
        Right("cat", ("--", conf), READ),
        Right("stat", (*STAT, app_settings), READ, about),
        Right("cat", ("--", app_settings), READ, about),
        Right("stat", (*STAT, env), READ),
        Right("sha256sum", ("--", env), READ),
        Right("cut", ("-s", "-d=", "-f1", "--", env), READ),
    ]


def serving(settings: Settings) -> list[Right]:
    """The switch's start and stop of the web service; each companion process restarted
    after it (its journal shown when it does not come back)."""
    web = units.service_unit(settings)
    found = [Right("systemctl", (verb, "--", web), SERVE, frozenset({web})) for verb in ("start", "stop")]  # fmt: skip
    since = Glob("@" + "[0-9]" * 10, "@1700000000")  # epoch seconds: restart_processes.sh's
    shown = ("-n", str(processes.JOURNAL_LINES), "--no-pager", "-o", "cat")
    for unit in units.environment_units(settings)[1:]:
        about = frozenset({unit})
        found += [
            Right("systemctl", ("restart", "--", unit), SERVE, about),
            Right("journalctl", ("-u", unit, "--since", since, *shown), SERVE, about),
        ]
    return found


def running(settings: Settings) -> list[Right]:
    """run.start, run.stop and run.restart of each unit (those `serving` has aside)."""
    verbs = {unit: ("start", "stop", "restart") for unit in units.environment_units(settings)}
    return [
        Right("systemctl", (verb, "--", unit), RUN, frozenset({unit}))
        for unit, each in verbs.items()
        for verb in each
    ]


def journals(settings: Settings) -> list[Right]:
    """`fab logs`: the journal of every unit of the environment, ``-n N``, or followed."""
    words = tuple(word for unit in units.environment_units(settings) for word in ("-u", unit))
    return [
        Right("journalctl", (*words, "-n", lines, *follow, "--no-pager"), LOGS)
        for follow in ((), ("-f",))
        for lines in journal_lines()
    ]


def setup_files(settings: Settings, group: str) -> list[tuple[str, str, str, str]]:
    """Every file setup writes as root: (path, owner, group, mode), as `install` makes it."""
    paths = layout(settings)
    companions = [units.process_unit_path(settings, name) for name in settings.processes]
    return [
        (paths.gunicorn_conf, "root", group, "640"),
        (unit_file(settings.app_name), "root", "root", "644"),
        (logrotate_file(settings.app_name), "root", "root", "644"),
        *((path, "root", "root", "644") for path in companions),
        (paths.settings_file, "root", group, "640"),
        (paths.env_file, "root", group, "640"),
    ]


def converged(settings: Settings) -> set[str]:
    """The files a deploy keeps in step (all of setup's but the logrotate file)."""
    return {path for path, *_ in setup_files(settings, "")} - {logrotate_file(settings.app_name)}


def setup(settings: Settings, ssh_user: str, group: str) -> list[Right]:
    """The rights of ``fab setup`` (as good as root) and of a deploy that changes setup's
    files."""
    return [
        *provisioning(settings, ssh_user),
        *layout_rights(settings, ssh_user, group),
        *linked_rights(settings, ssh_user, group),
        *file_rights(settings, group),
    ]


#: setup.packages, only when venv support is missing.
APT = ("DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "python3", "python3-venv")  # fmt: skip


def provisioning(settings: Settings, ssh_user: str) -> list[Right]:
    """The packages, and the app user (when it is not the SSH user) made when missing."""
    root, app = layout(settings).root, settings.app_user
    found = [Right("apt-get", ("update", "-q"), SETUP), Right("env", APT, SETUP)]
    if app != ssh_user:
        user = ("--system", "--user-group", "--home-dir", root, "--no-create-home")
        found.append(Right("useradd", (*user, "--shell", "/usr/sbin/nologin", app), SETUP))
    return found


def layout_rights(settings: Settings, me: str, group: str) -> list[Right]:
    """The ownership model's directories (scripts/setup-directories.sh): /etc/<app> and the
    deploy root made, what a migration hands over (``chown USER:``: the user's own group)."""
    paths, app = layout(settings), settings.app_user
    found = [
        Right("install", ("-d", "-o", "root", "-g", group, "-m", "0750", "--", paths.etc), SETUP),
        Right("ls", ("-A", "--", paths.etc), SETUP),
        Right("chown", ("-h", f"root:{group}", "--", paths.etc), SETUP),
        Right("chmod", ("0750", "--", paths.etc), SETUP),
        Right("install", ("-d", "-o", me, "-g", group, "-m", "0750", "--", paths.root), SETUP),
        Right("chown", ("-h", f"{me}:{group}", "--", paths.root), SETUP),
        Right("chown", ("-h", f"{me}:", "--", paths.shared), SETUP),
    ]
    deep = (paths.releases, paths.venvs, paths.incoming, paths.switch_runs, paths.current,
            paths.current_tmp, paths.lock, paths.revisions_log)  # fmt: skip
    found += [Right("chown", ("-R", "-h", f"{me}:", "--", path), SETUP) for path in deep]
    found += [
        Right("install", ("-d", "-o", app, "-g", group, "-m", "0750", "--", paths.logs), SETUP),
        Right("chown", ("-R", "-h", f"{app}:", "--", paths.logs), SETUP),
    ]
    legacy = (f"{paths.legacy_gunicorn_conf.rpartition('/')[0]}/__pycache__", paths.legacy_pids)
    return found + [Right("chown", ("-R", "-h", f"{me}:", "--", path), SETUP) for path in legacy]


def linked_rights(settings: Settings, me: str, group: str) -> list[Right]:
    """LINKED_DIRS and LINKED_FILES in shared/ (scripts/linked_paths.sh): made as the app
    user's when missing; handed over by a migration, the directories above a nested one to
    the SSH user."""
    paths, app = layout(settings), settings.app_user
    found: list[Right] = []
    for kind, linked in (("dir", settings.linked_dirs), ("file", settings.linked_files)):
        for relative in linked:
            path = f"{paths.shared}/{relative.strip('/')}"
            above = path.rpartition("/")[0]
            while len(above) > len(paths.shared):
                found.append(Right("chown", ("-h", f"{me}:", "--", above), SETUP))
                above = above.rpartition("/")[0]
            found.append(Right("chown", ("-R", "-h", f"{app}:", "--", path), SETUP))
            made = ("-d", "-o", app, "-g", group, "-m", "0750", "--", path)
            if kind == "file":
                made = ("-m", "0640", "-o", app, "-g", group, "--", "/dev/null", path)
            found.append(Right("install", made, SETUP))
    return found


def file_rights(settings: Settings, group: str) -> list[Right]:
    """Setup's files written as root (scripts/write-file.sh), and those a deploy keeps in step
    (scripts/converge.sh: the copy of before kept, put back or removed); the units enabled."""
    paths, kept = layout(settings), converged(settings)
    written = setup_files(settings, group)
    found = [
        Right("mkdir", ("-p", "--", folder), SETUP)
        for folder in dict.fromkeys(path.rpartition("/")[0] for path, *_ in written)
        if folder != paths.etc  # made by `install -d` (`layout_rights`)
    ]
    web = units.service_unit(settings)
    found += [Right("systemctl", (verb, "--", web), SETUP, frozenset({web})) for verb in ("enable", "disable")]  # fmt: skip
    for path, owner, grp, mode in written:
        about, use = frozenset({path}), CONVERGE if path in kept else SETUP
        made = ("-m", mode, "-o", owner, "-g", grp, "--", "/dev/stdin", path + NEW)
        found += [Right("install", made, use, about), Right("mv", ("-fT", "--", path + NEW, path), use, about)]  # fmt: skip
        if path in kept:
            found += [
                Right("rm", ("-f", "--", path + OLD), use, about),
                Right("cp", ("-p", "--", path, path + OLD), use, about),
                Right("mv", ("-fT", "--", path + OLD, path), use, about),
                Right("rm", ("-f", "--", path), use, about),
            ]
    unit_files = frozenset(path for path, *_ in written if path.endswith(".service"))
    found.append(Right("systemctl", ("daemon-reload",), CONVERGE, unit_files))
    for name in settings.processes:
        unit = units.unit_name(settings, name)
        about = frozenset({unit, units.process_unit_path(settings, name)})
        found.append(Right("systemctl", ("enable", "--", unit), CONVERGE, about))
    return found


def rights(settings: Settings, ssh_user: str, group: str) -> list[Right]:
    """Every right fabdeploy needs on the hosts of ``settings`` for ``ssh_user`` (each line
    once: the first use that needs it keeps it), the day-to-day ones first."""
    found: dict[str, Right] = {}
    for right in daily(settings) + setup(settings, ssh_user, group):
        found.setdefault(right.line(), right)
    return list(found.values())


def render(settings: Settings, users: list[str]) -> str:
    """The sudoers file for the environment of ``settings``, its SSH ``users`` (visudo -cf
    valid): a header, the day-to-day alias, the setup alias, and each user's rules."""
    group, app = app_group(settings), settings.app_user
    found: dict[str, Right] = {}
    for user in users:
        for right in rights(settings, user, group):
            found.setdefault(right.line(), right)
    day, setup_alias = alias(settings, READ), alias(settings, SETUP)
    text = header(settings, users, day, setup_alias)
    for name, uses in ((day, DAILY), (setup_alias, SETUP_ONLY)):
        lines = [line for line, right in found.items() if right.use in uses]
        text += f"\nCmnd_Alias {name} = \\\n    " + ", \\\n    ".join(lines) + "\n"
    text += "\n"
    for user in users:
        text += f"{user} ALL=(root) NOPASSWD: {day}, {setup_alias}\n"
        if app != user:
            text += f"{user} ALL=({app}) NOPASSWD: ALL\n"
    return text


def for_hosts(settings: Settings, hosts: list[Host]) -> str:
    """`render` for the SSH users of ``hosts`` (``fab <env> setup.sudoers``)."""
    return render(settings, list(dict.fromkeys(host.conn.user for host in hosts)))


def header(settings: Settings, users: list[str], day: str, setup_alias: str) -> str:
    """The comment that opens the file: what it is for, how to install it, what each alias
    and the app user's rule allow."""
    paths, app = layout(settings), settings.app_user
    name = file_name(settings)
    return (
        f"# {name}: what fabdeploy runs with sudo on the hosts of {settings.environment}\n"
        f"# (APP_NAME={settings.app_name}, DEPLOY_ROOT={paths.root}, APP_USER={app} of group "
        f"{app_group(settings)}, SSH user {', '.join(users)}).\n"
        f"# Printed by `{fab_command(settings, 'setup.sudoers')}`; check it and install it as "
        "root:\n"
        f"#   visudo -cf FILE && install -m 0440 FILE {name}\n"
        f"# {day}: deploy, rollback, run.*, logs (-n up to {MAX_LOG_LINES}), status, health,\n"
        "#   exec, cleanup, check. Nothing in it writes a file as root.\n"
        f"# {setup_alias}: fab setup, and a deploy that puts changed setup files (the units,\n"
        f"#   {paths.etc}/*) in place: as good as root, since whoever writes a unit decides what\n"
        "#   runs. Leave it out between setups if you like: `fab check` names what a deploy\n"
        "#   then lacks.\n"
        f"# ALL as {app}: hooks, migrations, exec, the app's files and signals. {app} owns only\n"
        "#   the app's data, logs and runtime files: acting as it is less privilege than the\n"
        "#   SSH user's own, not more. docs/security.md#sudo explains every line.\n"
    )


def probes(host: Host) -> list[Right]:
    """The rights ``scripts/facts.sh`` asks ``host`` about, in order: those of `NEEDS` (with
    the CONVERGE ones a deploy may need) that concern what ``host`` runs and has; the app
    user's group is `APP_GROUP` (facts.sh puts it in). The settings file's only when the app
    has settings (``ENV_<NAME>``): a host whose rule predates them keeps working without."""
    settings = host.settings
    mine = {units.unit_name(settings, name) for name in roles.processes_of(settings, host.name)}
    mine |= {units.process_unit_path(settings, name) for name in roles.companions_of(settings, host.name)}  # fmt: skip
    mine |= converged(settings) - {units.process_unit_path(settings, p) for p in settings.processes}  # fmt: skip
    if not settings.app_env:
        mine.discard(layout(settings).settings_file)
    asked = {use for uses in NEEDS.values() for use in uses}
    return [
        right
        for right in rights(settings, host.conn.user, APP_GROUP)
        if right.use in asked and (not right.about or right.about & mine)
    ]


def probe_env(host: Host) -> dict[str, object]:
    """What facts.sh reads to ask sudo: SUDO_PROBES (one right a line, its words tab-separated)
    and SUDO_AS (the app user, asked about too when it is another user than the SSH user)."""
    lines = ["\t".join(right.probe()) for right in probes(host)]
    return {"SUDO_PROBES": "\n".join(lines), "SUDO_AS": "" if host.app_is_deploy_user else host.app_user}  # fmt: skip


def missing(host: Host, refused: tuple[int, ...], command: str, files: tuple[str, ...] = ()) -> list[Right]:  # fmt: skip
    """The rights ``command`` (a key of `NEEDS`) needs on ``host`` that facts.sh found
    ``refused`` (indexes into `probes`); a deploy that changes setup's ``files`` needs their
    CONVERGE rights too."""
    asked, wanted = probes(host), NEEDS[command]
    found = [asked[index] for index in refused if index < len(asked)]
    return [r for r in found if r.use in wanted or (r.use == CONVERGE and r.about & set(files))]


def refused_for(host: Host, facts: Facts, command: str, files: tuple[str, ...] = ()) -> str:
    """What sudo refuses on ``host`` (its `Facts`) that ``command`` needs, changing setup's
    ``files``: the lines to add ("" nothing)."""
    if facts.sudo_as_refused:
        return app_refused(host)
    found = missing(host, facts.sudo_missing, command, files)
    return refusal(host, found, facts.app_group or host.app_user) if found else ""


def spelled(right: Right, group: str) -> str:
    """The line of ``right`` with the app user's ``group`` (for a probe's `APP_GROUP`)."""
    return right.line().replace(APP_GROUP, group)


def app_refused(host: Host) -> str:
    """What to say when the SSH user may not act as the app user."""
    user, app = host.conn.user, host.app_user
    return (
        f"{user} may not act as the app user {app} with sudo -n: add `{user} ALL=({app}) "
        f"NOPASSWD: ALL` to {file_name(host.settings)} "
        f"(`{fab_command(host.settings, 'setup.sudoers')}` prints the file; docs/security.md#sudo)"
    )


def refusal(host: Host, found: list[Right], group: str, *, lead: str = "", shown: int = 3) -> str:  # fmt: skip
    """What to say when sudo refuses ``found`` (the app user's ``group`` on the host): each
    line to add and its alias (the first ``shown``), and how to get the whole file."""
    settings = host.settings
    lines = [f"`{spelled(right, group)}` ({alias(settings, right.use)})" for right in found[:shown]]  # fmt: skip
    more = f" and {len(found) - shown} more" if len(found) > shown else ""
    lead = lead or f"{host.conn.user} may not run as root with sudo -n"
    return (
        f"{lead}: {', '.join(lines)}{more}: add {'them' if len(found) > 1 else 'it'} to "
        f"{file_name(settings)} (`{fab_command(settings, 'setup.sudoers')}` prints the file; "
        "docs/security.md#sudo)"
    )
