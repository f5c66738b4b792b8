"""The layers of tasks/ (docs/architecture.md): collections of tasks on top, each layer a
subpackage saying what lives there, and the import contracts that keep arrows pointing down."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.build.wheels import parse_toml

REPO = Path(__file__).resolve().parents[2]
TASKS = REPO / "tasks"
LINT = Path(sys.executable).with_name("lint-imports")


def contracts() -> list[dict]:  # type: ignore[type-arg]
    """pyproject.toml's import-linter contracts."""
    data = parse_toml((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return data["tool"]["importlinter"]["contracts"]


def layers() -> list[list[str]]:
    """The layers, top first, each a list of its (independent) members."""
    (found,) = [c for c in contracts() if c["type"] == "layers"]
    return [[part.strip() for part in layer.split("|")] for layer in found["layers"]]


def test_every_module_of_tasks_is_in_a_layer() -> None:
    named = {member for layer in layers() for member in layer}
    top = {p.stem for p in TASKS.glob("*.py") if p.stem != "__init__"}
    packages = {p.parent.name for p in TASKS.glob("*/__init__.py")}
    assert top | packages == named


def test_collections_hold_tasks_and_their_collection_only() -> None:
    for name in layers()[0]:
        tree = ast.parse((TASKS / f"{name}.py").read_text(encoding="utf-8"))
        for node in tree.body:
            assert not isinstance(node, ast.ClassDef), f"tasks/{name}.py: class {node.name}"
            if isinstance(node, ast.FunctionDef):
                decorators = [ast.unparse(d) for d in node.decorator_list]
                assert any(d.startswith("task") for d in decorators), (
                    f"tasks/{name}.py: {node.name} is not a task: it belongs to a layer below"
                )


def test_each_layer_says_in_one_line_what_lives_there() -> None:
    for package in TASKS.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(package.read_text(encoding="utf-8"))) or ""
        assert doc and "\n" not in doc.strip(), f"{package}: one line saying what lives there"


@pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")
@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("core/kv.py", "from ..host import service", "Arrows point down"),
        ("config/key.py", "from ..ssh import host", "Arrows point down"),
        ("host/facts.py", "from ..steps import noop", "Arrows point down"),
        ("deploy.py", "from . import monitor", "No collection imports another"),
        ("steps/noop.py", "from ..core import kv", ""),  # downward: kept
    ],
)
def test_the_contracts_catch_an_upward_import(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    shutil.copytree(TASKS, tmp_path / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    target = tmp_path / "tasks" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # noqa\n")
    done = subprocess.run(
        [str(LINT), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        check=False, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    if broken:
        assert done.returncode == 1, done.stdout + done.stderr
        _, _, section = done.stdout.partition("Broken contracts")
        assert broken in section, done.stdout  # that contract, named among the broken ones
    else:
        assert done.returncode == 0, done.stdout + done.stderr
