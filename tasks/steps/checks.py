"""``fab check``: every precondition of a deploy, changing nothing anywhere.

Locally: the env file, the key file, APP_DIR, the requirements, the git state, the secrets
file, the local Python and the app's Python requirement (`tasks.build.pyreq`). On each host: SSH
and the host key, who the app runs as (a warning when it is the SSH user), the set-up layout,
what sudo allows (``sudo -n -l``: each right a deploy needs, `tasks.host.sudoers`), the Python
(against that requirement) and its wheel tags, the disk free under the deploy root, the port in
BIND (free, or held by the app's own service), the unit and its state, the deploy lock and its
holder.

One line per finding, host-prefixed; the command exits 0 when a deploy would start and 1 when
something blocks it, naming what. ``--json`` prints the findings as one JSON document
(docs/check.md).
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from fabric import Connection
from invoke.context import Context

from .. import config
from ..build import preflight, pyreq, source
from ..config import origins
from ..core.errors import FabdeployError, HostError, detail
from ..core.local import local_user, pid_alive
from ..core.output import Output
from ..core.paths import layout
from ..core.report import print_json
from ..host import facts as host_facts
from ..host import migrate, precheck, provision, sudoers, units
from ..host.lockfile import describe_held, is_stale, read_lock
from ..ssh import session

if TYPE_CHECKING:
    from ..config import Settings
    from ..ssh.host import Host


#: Free space under the deploy root below which a deploy is refused (a release, a venv).
MIN_FREE_MIB = 100


THIS_MACHINE = "local"


@dataclass(frozen=True)
class Finding:
    """One precondition and what was found: ``ok`` False blocks a deploy; ``warning`` does
    not, but says what the deploy would get wrong."""

    check: str
    ok: bool
    detail: str
    warning: bool = False

    def line(self) -> str:
        """The finding as ``fab check`` prints it."""
        status = "BLOCKS " if not self.ok else "WARNING" if self.warning else "ok     "
        return f"{status} {self.check}: {self.detail}"


def sources(c: Context, *, as_json: bool = False) -> None:
    """``fab check --sources``: each key's value and where it came from (config/common.env,
    the environment's file, a default, ``-H``), the secrets by name with their values masked;
    no host is asked. Under ``fab -H a,b`` it prints once (Fabric calls the task per host)."""
    settings = config.load(c)
    given = session.fab_hosts()
    if isinstance(c, Connection):  # one call per -H host: the first prints, as a fleet's
        shared = session.command(c)
        if shared.fleet_covers:
            shared.fleet_covers -= 1
            return
        shared.fleet_covers = max(len(given) - 1, 0)
    rows = origins.origins(settings, given)
    output = Output(mask=settings.secrets.values())
    if as_json:
        print_json([row._asdict() for row in rows], output.clean)
        return
    for line in origins.render(rows):
        output.say(line)


def migrations(settings: Settings, hosts: list[str]) -> list[Finding]:
    """Where MIGRATE_COMMAND would run, warned when a host-local database on several web hosts
    would be migrated on the primary only (`migrate.local_database_warning`)."""
    where = migrate.where_line(settings, hosts)
    if not where:
        return []
    warning = migrate.local_database_warning(settings, hosts)
    return [Finding("migrations", True, warning or where, warning=bool(warning))]


def attempt(name: str, work: Callable[[], str]) -> Finding:
    """Run one check: its text when it passes, the error's when it raises."""
    try:
        return Finding(name, True, work())
    except (FabdeployError, OSError) as exc:
        return Finding(name, False, detail(exc))


def local(settings: Settings) -> list[Finding]:
    """The local preconditions, each on its own (one failing does not hide the others)."""
    git_ok = settings.allow_dirty

    def key() -> str:
        session.check_key_file(settings)
        return settings.ssh_key or "none set (ssh's own keys and agent)"

    def app_dir() -> str:
        preflight.app_dir(settings)
        return str(settings.app_dir)

    def requirements() -> str:
        found = preflight.requirements(settings)
        more = f" (including {', '.join(found.included)})" if found.included else ""
        added = f"; fabdeploy adds {', '.join(found.added)}" if found.added else ""
        return str(settings.app_dir / found.file) + more + added

    def git() -> str:
        if source.git_prefix(settings.app_dir) is None:
            return "not in git: the directory is shipped as it is"
        preflight.git_state(settings, allow_dirty=git_ok)
        return "committed" if not git_ok else "ALLOW_DIRTY=yes: uncommitted changes are shipped"

    found = [
        Finding("env file", True, str(settings.source)),
        attempt("key file", key),
        attempt("APP_DIR", app_dir),
        attempt("requirements", requirements),
    ]
    if found[2].ok:
        found.append(attempt("git state", git))
    names = settings.secrets.names()
    found.append(
        Finding("secrets", True, f"{len(names)} key(s) from {settings.secrets.path}")
        if settings.secrets.path
        else Finding("secrets", True, "no SECRETS_FILE")
    )
    python = f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"
    found.append(Finding("local python", True, python))
    found.append(attempt("python requirement", lambda: python_requirement(settings)))
    return found


def python_requirement(settings: Settings) -> str:
    """The app's Python requirement, and whether the local test step's Python satisfies it
    (`tasks.build.pyreq`); it does not: raises."""
    problem = pyreq.check_local(settings)
    if problem:
        raise FabdeployError(problem)
    found = pyreq.describe(settings)
    if pyreq.find(settings) is None:
        return found
    if not settings.test_command.strip():
        return f"{found}; no test step (TEST_COMMAND is empty): the local Python runs no app code"
    return f"{found}, the local test step's Python {pyreq.local_version()} satisfies it"


def on_host(host: Host) -> list[Finding]:
    """The host's preconditions, read in a few round trips, nothing changed."""
    try:
        host.open()
    except HostError as exc:
        return [Finding("ssh", False, exc.detail)]
    found = [Finding("ssh", True, f"{host.conn.user}@{host.name}, host key known"), app_user_finding(host)]  # fmt: skip
    try:
        facts = host_facts.read_facts(host, cached=False)  # the layout, sudo, the Python
    except HostError as exc:
        return [*found, Finding("set up", False, exc.detail)]
    found += [
        Finding("set up", True, layout(host.settings).root),
        *sudo_findings(host, facts),
        attempt("python", lambda: host_python(host.settings, facts)),
    ]
    return found + host_state(host, facts.running)


def sudo_findings(host: Host, facts: host_facts.Facts) -> list[Finding]:
    """What sudo allows the SSH user (``sudo -n -l``, `tasks.host.sudoers`): the rights a
    deploy needs (one finding per missing right, naming the line to add); a warning when a
    deploy could not put changed setup files in place."""
    user, group = host.conn.user, facts.app_group or host.app_user
    if facts.sudo_as_refused:
        return [Finding("sudo", False, sudoers.app_refused(host))]
    needed = sudoers.missing(host, facts.sudo_missing, "check")
    if needed:
        return [Finding("sudo", False, sudoers.refusal(host, [right], group)) for right in needed]  # fmt: skip
    files = sudoers.missing(host, facts.sudo_missing, "converge")
    acting = "" if host.app_is_deploy_user else f", and acts as {host.app_user}"
    found = [Finding("sudo", True, f"{user} runs as root what a deploy needs{acting}")]
    if files:
        lead = f"a deploy that changes setup's files needs {user} to run as root, which sudo -n refuses"  # fmt: skip
        found.append(Finding("sudo", True, sudoers.refusal(host, files, group, lead=lead), warning=True))  # fmt: skip
    return found


def app_user_finding(host: Host) -> Finding:
    """Who the app runs as: a user of its own, or (warned) the SSH user, who has sudo."""
    warning = provision.deploy_user_warning(host)
    if warning:
        return Finding("app user", True, warning, warning=True)
    return Finding("app user", True, f"{host.app_user}, a user of its own ({host.conn.user} deploys)")  # fmt: skip


def host_python(settings: Settings, facts: host_facts.Facts) -> str:
    """The host's Python and tags, and that it satisfies the app's Python requirement (it
    does not: raises, one line)."""
    problem = pyreq.check_host(settings, facts.python)
    if problem:
        raise FabdeployError(problem)
    found = pyreq.find(settings)
    satisfies = f", satisfies {found.describe()}" if found else ""
    return f"{facts.python.split(' (')[0]} ({facts.tags.name}){satisfies}"


def host_state(host: Host, running: bool) -> list[Finding]:
    """Disk, port, unit and lock on the host (``running``: the app's master is alive)."""
    settings = host.settings
    facts = precheck.read(host)
    free = int(facts.get("disk_kib") or 0) >> 10
    unit = facts.get("unit") or "unknown"
    port = facts.get("port", "unknown")
    found = [
        Finding(
            "disk",
            free >= MIN_FREE_MIB,
            f"{free} MiB free under {layout(settings).root}"
            + ("" if free >= MIN_FREE_MIB else f" (a deploy needs {MIN_FREE_MIB} MiB)"),
        ),
        Finding(
            "unit",
            True,
            f"{units.service_unit(settings)} is {unit}" + ("" if running else ", no master"),
        ),
        port_finding(settings, port),
    ]
    return [*found, lock_finding(host)]


def port_finding(settings: Settings, port: str) -> Finding:
    """The port of BIND: free, or held by the app's own service; anything else blocks."""
    where = f"{settings.bind}"
    if port == "free":
        return Finding("port", True, f"{where} is free")
    if port == "ours":
        return Finding("port", True, f"{where} is held by {units.service_unit(settings)}")
    if port.startswith("taken"):
        name, _, pid = port.partition(" ")[2].partition(",pid=")
        who = f"{name.strip(chr(34))} (pid {pid})" if pid else "another process"
        return Finding(
            "port", False, f"{where} is taken by {who}, not by {units.service_unit(settings)}"
        )
    return Finding("port", True, f"{where}: {port}")


def lock_finding(host: Host) -> Finding:
    """The deploy lock: none, stale (the next deploy breaks it), or held (blocks)."""
    found = read_lock(host)
    if found is None:
        return Finding("lock", True, "not locked")
    holder, now = found
    held = describe_held(holder, now)
    machine = local_user().partition("@")[2]
    if is_stale(holder, machine, pid_alive):
        return Finding("lock", True, f"stale lock of {held}: the next deploy breaks it")
    return Finding("lock", False, f"held by {held}")


def to_json(where: str, findings: list[Finding]) -> dict[str, object]:
    """One object of ``check --json`` (docs/check.md)."""
    return {
        "host": where,
        "ok": all(f.ok for f in findings),
        "findings": [asdict(f) for f in findings],
    }
