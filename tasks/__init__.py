"""fabdeploy: Fabric tasks that take a Python web app from a checkout to serving on servers.

`namespace` builds the root collection: the five stages (setup, test, upload, run,
monitor), ``deploy`` and ``rollback``, ``check`` and ``plan``, ``lock`` (``lock.status``) and ``unlock``, the most used monitor tasks at the top level, and
one task per environment file (``fab staging deploy``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from invoke import Collection, Task, task

from . import check, config, deploy, execute, hooks, lock, monitor, plan, run, setup, test, upload
from .errors import ConfigError, FabdeployError, HostError

__all__ = ["ConfigError", "FabdeployError", "HostError", "hooks", "namespace", "ns"]


def environment_task(name: str, source: Path) -> Task:
    """A task that selects ``source`` as the environment for the tasks after it."""

    def select(c):  # type: ignore[no-untyped-def]
        config.state(c)["environment"] = name

    select.__doc__ = f"Use the {name} environment ({source.name}) for the tasks that follow."
    select.__name__ = name
    return task(select, name=name)


def namespace(project_dir: Path | str | None = None) -> Collection:
    """The root collection, reading environments from ``project_dir``/config (default: found
    from the current directory upward)."""
    project = Path(project_dir).resolve() if project_dir else config.find_project_dir()
    ns = Collection()
    for stage in (setup, test, upload, run, monitor):
        ns.add_collection(stage.ns)
    ns.add_task(deploy.deploy, default=False)
    ns.add_task(deploy.rollback)
    ns.add_collection(lock.ns)
    ns.add_task(lock.unlock)
    ns.add_task(deploy.trust)
    ns.add_task(check.check)
    ns.add_task(plan.plan)
    ns.add_task(execute.exec_)
    for shortcut in (
        monitor.logs,
        monitor.status,
        monitor.health,
        monitor.resources,
        monitor.releases,
    ):
        ns.add_task(shortcut)
    taken = set(ns.task_names) | set(ns.collections)
    for name in config.environments(project / "config"):
        source = project / "config" / f"{name}.env"
        if name in taken:
            print(
                f"fabdeploy: warning: {source}: environment {name!r} is hidden by the task of "
                f"that name; rename the file (e.g. {name}-env.env) to select it",
                file=sys.stderr,
            )
            continue
        ns.add_task(environment_task(name, source))
    ns.configure({"fabdeploy": {"project_dir": str(project), "environment": None}})
    return ns


ns = namespace()
