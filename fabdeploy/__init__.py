"""fabdeploy under a name no project shadows: ``from fabdeploy import ns``.

fabdeploy's task package is called ``tasks``. A project with its own ``tasks.py`` or
``tasks/`` hides it from ``import tasks``; this module loads fabdeploy's package from where
it is installed, whatever ``tasks`` means on ``sys.path``, as ``fabdeploy.tasks``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def _load_tasks() -> ModuleType:
    """fabdeploy's ``tasks`` package: the one already imported if it is ours, else a fresh load."""
    here = Path(__file__).resolve().parent.parent / "tasks"
    loaded = sys.modules.get("tasks")
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve().parent == here:
        return loaded
    init = here / "__init__.py"
    if not init.is_file():
        raise ImportError(
            f"fabdeploy: its task package is missing from {here}; reinstall fabdeploy "
            "(pip install --force-reinstall fabdeploy)"
        )
    spec = importlib.util.spec_from_file_location(
        "fabdeploy.tasks", init, submodule_search_locations=[str(here)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fabdeploy.tasks"] = module
    spec.loader.exec_module(module)
    return module


tasks = _load_tasks()
ns = tasks.ns
namespace = tasks.namespace
hooks = tasks.hooks
FabdeployError = tasks.FabdeployError
ConfigError = tasks.ConfigError
HostError = tasks.HostError

__all__ = ["ConfigError", "FabdeployError", "HostError", "hooks", "namespace", "ns", "tasks"]
