"""Stage monitor: logs, status, health, resources and release history.

Each task sends one script per host (hosts in parallel), the script prints ``key=value``
lines (``scripts/status.sh``, ``resources.sh``, ``history.sh``; ``logs.sh`` prints the logs;
docs/scripts.md), and the modules of tasks/host/ parse them (`tasks.host.status`,
`tasks.host.resources`, `tasks.host.history`, `tasks.host.logs`), so what a host reports is
plain data that unit tests can feed in. A host is healthy when its health path answers 200
(`tasks.host.service.healthy`).
Nothing here finds processes by name: the gunicorn master comes from the pidfile, its
workers are the processes whose parent it is.

With ``--json``, status, health, resources and releases print one JSON document, a list with
an object per host (the shapes are in docs/json.md), and nothing else on stdout.

Exit codes: ``health`` exits 1 naming every unhealthy host; ``status``, ``resources`` and
``releases`` print a row for every host and then exit 1 if a host could not be asked;
``logs --follow`` runs until Ctrl-C and then exits 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke import Collection, task

from .core.errors import FabdeployError
from .core.flagtask import FlagTask
from .core.report import JSON_HELP, show
from .host import history
from .host import resources as host_resources
from .host.history import render_releases
from .host.logs import follow_logs, read_logs
from .host.resources import render_resources
from .host.status import gather_status, health_line, refused, render_status, settings_lines
from .ssh import session
from .ssh.fanout import fail_if_unanswered, report_errors

if TYPE_CHECKING:
    pass


#: ``--roles`` of the tasks that take it.
ROLES_HELP = "only the hosts of these roles (ROLE_<NAME>), comma-separated"


@task(name="status", help={"json": JSON_HELP, "roles": ROLES_HELP})
def status(c, json=False, roles=""):  # type: ignore[no-untyped-def]
    """Show service state, release, revision, pid, uptime, memory, CPU and health per host."""
    settings, hosts = session.session(c, data_on_stdout=json, roles=roles)
    statuses = gather_status(hosts, settings, sample=True)
    text = "\n".join([render_status(statuses), *settings_lines(statuses)])
    show(hosts[0].output, statuses, None if json else text)
    report_errors(hosts[0].output, statuses)
    why = refused(settings, statuses)
    if why:
        hosts[0].output.line("", why, err=True)
    fail_if_unanswered(statuses, "status")


@task(name="health", help={"json": JSON_HELP})
def health(c, json=False):  # type: ignore[no-untyped-def]
    """Check service and health path on every host; exit 1 naming unhealthy ones (for cron/CI)."""
    settings, hosts = session.session(c, data_on_stdout=json)
    statuses = gather_status(hosts, settings, sample=False)
    output = hosts[0].output
    if json:
        show(hosts[0].output, statuses, None)
    for s in statuses if not json else []:
        output.line(s.host, health_line(s), err=not s.healthy)
    sick = [s for s in statuses if not s.healthy]
    if sick:
        sick_hosts = "; ".join(f"{s.host} ({', '.join(s.problems())})" for s in sick)
        why = refused(settings, sick)
        raise FabdeployError(
            f"{len(sick)} of {len(statuses)} hosts unhealthy: {sick_hosts}"
            + (f". {why}" if why else "")
        )


@task(name="resources", help={"json": JSON_HELP})
def resources(c, json=False):  # type: ignore[no-untyped-def]
    """Show load, memory, disk free under the deploy root and the releases kept, per host."""
    settings, hosts = session.session(c, data_on_stdout=json)
    items, replies = host_resources.gather(hosts, settings)
    show(hosts[0].output, items, None if json else render_resources(items))
    report_errors(hosts[0].output, replies)
    fail_if_unanswered(replies, "resources")


@task(
    name="releases",
    klass=FlagTask,
    short={"limit": "n"},
    help={
        "limit": "Show at most N entries per host, newest first (0: all; default 20)",
        "json": JSON_HELP,
    },
)
def releases(c, limit=20, json=False):  # type: ignore[no-untyped-def]
    """List the deploy history from revisions.log, newest first; * marks the current release."""
    settings, hosts = session.session(c, data_on_stdout=json)
    histories, replies = history.gather(hosts, settings, int(limit))
    show(hosts[0].output, histories, None if json else render_releases(histories))
    report_errors(hosts[0].output, replies)
    fail_if_unanswered(replies, "releases")


@task(
    name="logs",
    klass=FlagTask,
    short={"lines": "n", "follow": "f"},
    help={
        "lines": "Lines of the journal and of each log file to show first (default 50)",
        "follow": "Keep streaming new lines from every host until Ctrl-C (exits 0)",
        "roles": ROLES_HELP,
    },
)
def logs(c, lines=50, follow=False, roles=""):  # type: ignore[no-untyped-def]
    """Show the journals of the service and its processes, and the app's log files."""
    settings, hosts = session.session(c, roles=roles)
    if follow:
        follow_logs(hosts, int(lines))
        return
    replies = read_logs(hosts, settings, int(lines))
    output = hosts[0].output
    for reply in replies:
        if not reply.error:
            output.line(reply.host, reply.text.rstrip("\n"))
    report_errors(output, replies)
    fail_if_unanswered(replies, "logs")


ns = Collection("monitor")
ns.add_task(status, default=True)
ns.add_task(logs)
ns.add_task(health)
ns.add_task(resources)
ns.add_task(releases)
