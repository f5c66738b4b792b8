"""fabdeploy: Fabric tasks that take a Python web app from a checkout to serving on servers.

`namespace` builds the root collection: the five stages (setup, test, upload, run,
monitor), ``deploy`` and ``rollback``, ``check`` and ``plan``, ``lock`` (``lock.status``) and
``unlock``, the most used monitor tasks at the top level, and one task per environment file
(``fab staging deploy``), those added when ``fab`` first looks at its tasks (`Namespace`):
importing the package reads no file and prints nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from invoke import Collection, Task, task
from invoke.util import Lexicon

from . import check, config, deploy, exec, lock, monitor, plan, run, setup, test, trust, upload
from .core.errors import ConfigError, FabdeployError, HostError
from .engine import hooks
from .ssh import session as remote  # noqa: F401  # `tasks.remote.session(c)`, as fabfiles had it

__all__ = ["ConfigError", "FabdeployError", "HostError", "Namespace", "hooks", "namespace", "ns"]

# Names user fabfiles took before the layers (docs/importing.md, docs/hooks.md) still work:
# `deploy.unlock` and `deploy.trust` are lock's and trust's tasks (no collection imports another).
deploy.unlock = lock.unlock  # type: ignore[attr-defined]
deploy.trust = trust.trust  # type: ignore[attr-defined]


def environment_task(name: str, source: Path) -> Task:
    """A task that selects ``source`` as the environment for the tasks after it."""

    def select(c):  # type: ignore[no-untyped-def]
        config.state(c)["environment"] = name

    select.__doc__ = f"Use the {name} environment ({source.name}) for the tasks that follow."
    select.__name__ = name
    return task(select, name=name)


class Namespace(Collection):
    """fabdeploy's root collection. Its environment tasks (one per ``config/<name>.env``) are
    added the first time anything looks at its tasks (``fab`` loading the fabfile, which
    ``--list`` and every command do; ``ns["staging"]``, ``ns.task_names``, ``ns.add_task``),
    once: building it reads no file and prints nothing.
    """

    def __init__(self, project_dir: Path | str | None = None) -> None:
        super().__init__()
        for stage in (setup, test, upload, run, monitor):
            self.add_collection(stage.ns)
        self.add_task(deploy.deploy, default=False)
        self.add_task(deploy.rollback)
        self.add_collection(lock.ns)
        self.add_task(lock.unlock)
        self.add_task(trust.trust)
        self.add_task(check.check)
        self.add_task(plan.plan)
        self.add_task(exec.exec_)
        for shortcut in (
            monitor.logs,
            monitor.status,
            monitor.health,
            monitor.resources,
            monitor.releases,
        ):
            self.add_task(shortcut)
        self.configure({"fabdeploy": {"environment": None}})
        self.project_dir = Path(project_dir).resolve() if project_dir else None
        self.loaded = False  # set last: the tasks above went in without loading

    def load(self) -> None:
        """Add the environment tasks now, unless they are in already."""
        if self.__dict__.get("loaded") is False:
            self.loaded = True
            self.add_environments(self.project_dir or config.find_project_dir())

    @property  # type: ignore[override]
    def tasks(self) -> Lexicon:
        """The tasks, the environment tasks among them (`load`)."""
        self.load()
        return self.__dict__["tasks"]

    @tasks.setter
    def tasks(self, value: Lexicon) -> None:
        self.__dict__["tasks"] = value

    def configuration(self, taskpath: str | None = None) -> dict[str, Any]:
        """invoke's `Collection.configuration`, with ``fabdeploy.project_dir`` (`load`)."""
        self.load()
        return super().configuration(taskpath)

    def add_environments(self, project: Path) -> None:
        """One task per environment file in ``project``/config, warning about any whose name
        a task or collection already has."""
        taken = set(self.task_names) | set(self.collections)
        for name in config.environments(project / "config"):
            source = project / "config" / f"{name}.env"
            if name in taken:
                print(
                    f"fabdeploy: warning: {source}: environment {name!r} is hidden by the task "
                    f"of that name; rename the file (e.g. {name}-env.env) to select it",
                    file=sys.stderr,
                )
                continue
            self.add_task(environment_task(name, source))
        self.configure({"fabdeploy": {"project_dir": str(project)}})


def namespace(project_dir: Path | str | None = None) -> Namespace:
    """The root collection, reading environments from ``project_dir``/config (default: found
    from the current directory upward) when it is first used (`Namespace`)."""
    return Namespace(project_dir)


ns = namespace()
