"""The requirements file and every file it includes, followed as pip follows them.

pip reads ``-r FILE`` / ``--requirement FILE`` and ``-c FILE`` / ``--constraint FILE``
lines (relative to the file that names them, ``${VAR}`` expanded from the environment),
recursively. A change in any of those files changes what the hosts install, so the
wheelhouse cache (`tasks.build.packages`) is keyed by all of them (`identity`), not by the top
file alone.

`read(settings)` walks them before any host changes; a problem is one error naming the
file and line: an include that does not exist, one outside APP_DIR (a release ships APP_DIR
only, so the hosts could not read it), or a cycle (pip itself recurses until it crashes). An
include by URL (``-r https://...``) is left to pip: its line is part of the identity, not
its content.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import FabdeployError

if TYPE_CHECKING:
    from ..config import Settings


#: The options that include another file, longest first (``--requirement`` before ``-r``).
INCLUDES = ("--requirement", "--constraint", "-r", "-c")


#: pip's comment: ``#`` at the start of a line or after whitespace.
_COMMENT = re.compile(r"(^|\s+)#.*$")


#: pip's environment variables in a requirements file: ``${NAME}`` (uppercase, digits, _).
_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)\}")


@dataclass(frozen=True)
class Include:
    """One ``-r``/``-c`` line: where it is, the option and the file it names."""

    line: int
    option: str
    target: str


@dataclass(frozen=True)
class Requirements:
    """The requirements file and the files it includes (APP_DIR-relative path -> text), the
    top file first, each once."""

    files: tuple[tuple[str, str], ...]

    @property
    def identity(self) -> str:
        """Every file's path and text: what the packages are resolved from."""
        return "\0".join(f"{path}\n{text}" for path, text in self.files)

    @property
    def included(self) -> tuple[str, ...]:
        """The included files' paths (not the top file)."""
        return tuple(path for path, _ in self.files[1:])


def logical_lines(text: str) -> list[tuple[int, str]]:
    """``(first line number, line)`` as pip sees them: continuations joined, comments
    stripped, ``${VAR}`` expanded, empty lines dropped."""
    found: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        line = _COMMENT.sub("", raw)
        if line.endswith("\\") and not raw.lstrip().startswith("#"):
            pending += line[:-1]
            continue
        line = (pending + line).strip()
        pending = ""
        line = _VARIABLE.sub(lambda m: os.environ.get(m.group(1), m.group(0)), line)
        if line:
            found.append((start, line))
    if pending.strip():
        found.append((start, pending.strip()))
    return found


def normalize(name: str) -> str:
    """A project name as PEP 503 compares it: lowercase, runs of ``-_.`` one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def names_of(text: str) -> set[str]:
    """The normalized project names in requirements ``text`` (options and comments skipped)."""
    found = set()
    for line in text.splitlines():
        named = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#")[0])
        if named and not line.lstrip().startswith("-"):
            found.add(normalize(named.group(1)))
    return found


def include_of(line: str) -> tuple[str, str] | None:
    """``(option, file)`` when ``line`` includes another file (``-r x``, ``-rx``,
    ``--requirement=x``, ``--constraint x``), else None."""
    for option in INCLUDES:
        if not line.startswith(option):
            continue
        rest = line[len(option) :]
        if option.startswith("--"):
            if rest[:1] not in ("=", " ", "\t"):
                return None  # another long option that starts alike
            rest = rest[1:] if rest.startswith("=") else rest
        target = rest.strip()
        if len(target) > 1 and target[0] == target[-1] and target[0] in "'\"":
            target = target[1:-1]
        return option, target
    return None


def includes(text: str) -> list[Include]:
    """The ``-r``/``-c`` lines of one requirements file, in order."""
    found = []
    for number, line in logical_lines(text):
        included = include_of(line)
        if included is not None:
            found.append(Include(number, *included))
    return found


def is_url(target: str) -> bool:
    """Whether an include names a URL (pip fetches it) rather than a file."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", target) is not None


def walk(app_dir: Path, top: str, text: str | None = None) -> Requirements:
    """The file ``top`` (APP_DIR-relative; ``text``: its content, else read) and every file it
    includes, depth first; `FabdeployError` naming the file and line of a missing include,
    one outside APP_DIR or a cycle."""
    root = app_dir.resolve()
    found: dict[str, str] = {}

    def visit(relative: str, body: str, chain: tuple[str, ...]) -> None:
        found[relative] = body
        here = (root / relative).parent
        for item in includes(body):
            if is_url(item.target) or not item.target:
                continue
            where = f"{root / relative}:{item.line}: `{item.option} {item.target}`"
            path = (here / item.target).resolve()
            try:
                name = path.relative_to(root).as_posix()
            except ValueError:
                raise FabdeployError(
                    f"{where}: {path} is outside APP_DIR {root}: a release ships "
                    "APP_DIR only, so the hosts could not read it (move it into APP_DIR)"
                ) from None
            if name in chain:
                cycle = " -> ".join((*chain[chain.index(name) :], name))
                raise FabdeployError(
                    f"{where}: the requirements include each other in a cycle "
                    f"({cycle}), which pip cannot install: remove one of the includes"
                )
            if name in found:
                continue  # included twice, not in a cycle: read once
            if not path.is_file():
                raise FabdeployError(f"{where}: {path} does not exist")
            try:
                content = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise FabdeployError(f"{where}: cannot read {path}: {exc}") from None
            visit(name, content, (*chain, name))

    top_name = Path(top).as_posix()
    body = text if text is not None else (root / top).read_text(encoding="utf-8")
    visit(top_name, body, (top_name,))
    return Requirements(tuple(found.items()))


def flatten(settings: Settings, text: str, top: str = "") -> tuple[str, str]:
    """REQUIREMENTS (``text``) as two texts that name no other file: its requirement lines
    with every ``-r`` file inlined, and the lines of every ``-c`` file (pip's rule: the option
    decides, even inside a constraints file). Each file once; URL includes stay as lines."""
    found = read(settings, text, top)
    files, root = dict(found.files), settings.app_dir.resolve()
    wanted: list[str] = []
    limits: list[str] = []
    seen = {found.files[0][0]}

    def visit(relative: str, into: list[str]) -> None:
        for _, line in logical_lines(files[relative]):
            item = include_of(line)
            if item is None or is_url(item[1]) or not item[1]:
                into.append(line)
                continue
            path = ((root / relative).parent / item[1]).resolve()
            name = path.relative_to(root).as_posix()
            if name not in seen:
                seen.add(name)
                visit(name, limits if item[0] in ("-c", "--constraint") else wanted)

    visit(found.files[0][0], wanted)
    return "".join(f"{line}\n" for line in wanted), "".join(f"{line}\n" for line in limits)


def read(settings: Settings, text: str | None = None, top: str = "") -> Requirements:
    """``top`` (the file the packages come from: `lockfiles.top`), else REQUIREMENTS, else
    requirements.txt (``text``: its content, when read already) and the files it includes."""
    return walk(settings.app_dir, top or settings.requirements or "requirements.txt", text)
