"""An example of a user's own fabfile built on fabdeploy (see docs/importing.md, docs/hooks.md).

It imports fabdeploy's whole namespace, attaches a migration hook that runs once per fleet
deploy before any host switches, adds a task of its own, and exposes `deploy` under a second
name. tests/integration/test_fleet.py deploys with it for real.
"""

from invoke import task

from fabdeploy import hooks, ns, tasks


@hooks.before("switch", ns, once=True)
def migrate(ctx):  # type: ignore[no-untyped-def]
    """Migrate the database once, with the new release's code, before any host serves it."""
    ctx.run(".venv/bin/python migrate.py")


@task
def uptime(c):  # type: ignore[no-untyped-def]
    """Show each host's uptime (a task of this project's own)."""
    _, hosts = tasks.ssh.session.session(c)
    for host in hosts:
        host.run("uptime")


ns.add_task(uptime)
ns.add_task(tasks.deploy.deploy, name="ship")
