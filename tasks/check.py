"""``fab check``: every precondition of a deploy, changing nothing anywhere.

One line per finding, host-prefixed, or one JSON document with ``--json``; the command exits
0 when a deploy would start and 1 when something blocks it, naming what. The findings, local
and on each host, are `tasks.steps.checks`'s (docs/check.md).
"""

from __future__ import annotations

from invoke import task

from .core.errors import ConfigError, FabdeployError, detail
from .core.report import JSON_HELP, print_json
from .ssh import fanout, session
from .steps import checks
from .steps.checks import THIS_MACHINE, Finding, local, migrations, on_host, to_json


@task(
    name="check",
    help={
        "json": JSON_HELP,
        "sources": "print each key's value and where it came from (config/common.env:LINE, the "
        "environment's file, default, -H), secrets masked, and check nothing else",
    },
)
def check(c, json=False, sources=False):  # type: ignore[no-untyped-def]
    """Check every precondition of a deploy, locally and on each host, changing nothing."""
    if sources:
        checks.sources(c, as_json=json)
        return
    try:
        settings, hosts = session.session(c, fleet=True, data_on_stdout=json)
    except ConfigError as exc:  # the env file or the key file: nothing else can be checked
        finding = Finding("settings", False, detail(exc))
        if json:
            print_json([to_json(THIS_MACHINE, [finding])])
        else:
            print(finding.line())
        raise FabdeployError(
            f"check: 1 finding blocks a deploy: [{THIS_MACHINE}] settings"
        ) from None
    if not hosts:
        return  # `fab -H a,b check`: checked with the others
    output = hosts[0].output
    results = [(THIS_MACHINE, local(settings) + migrations(settings, [h.name for h in hosts]))]
    try:
        done = fanout.each(hosts, on_host, settings.parallel)
    finally:
        for host in hosts:
            host.close()
    for host, found in done.items():
        if host in done.failed:  # the checks could not run: one finding says why
            found = [Finding("check", False, detail(found))]
        results.append((host.name, found))
    if json:
        print_json([to_json(where, found) for where, found in results], output.clean)
    else:
        for where, found in results:
            for finding in found:
                output.line("" if where == THIS_MACHINE else where, finding.line())
    blocking = [f"[{where}] {f.check}" for where, found in results for f in found if not f.ok]
    if blocking:
        raise FabdeployError(
            f"check: {len(blocking)} finding(s) block a deploy: {', '.join(blocking)}"
        )
    if not json:
        output.say(f"check: a deploy would start on {len(hosts)} host(s)")
