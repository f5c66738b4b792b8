"""Interpreter tags: which wheels a Python accepts, learned from that Python itself.

A `TagSet` is what pip on a host would accept: the implementation (``cp``), the X.Y
version, the ABI tags and the platform tags (``manylinux_2_36_x86_64`` ...). The check step
learns each host's by running `SCRIPT` (``tasks/scripts/host_tags.py``) with the host's
Python; `local` runs the same file with the Python that runs ``fab``. Packages are then
resolved for each distinct tag set (`pip_args`) and checked against it (`accepts`).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging import tags as packaging_tags
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from ..core.errors import FabdeployError

#: The script that prints a Python's tags as one JSON line (run on the hosts and locally).
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "host_tags.py"


@dataclass(frozen=True)
class TagSet:
    """The wheel tags one interpreter accepts; equal when the same wheels install on both."""

    implementation: str  # "cp"
    python_version: str  # "3.12"
    interpreter: str  # "cp312"
    abis: tuple[str, ...]  # most specific first: ("cp312", "abi3", "none")
    platforms: tuple[str, ...]  # most specific first: ("manylinux_2_36_aarch64", ...)
    #: PEP 508 marker values of the Python that reported the tags (not part of equality:
    #: hosts differing only in, say, their kernel release share one tag set).
    markers: Mapping[str, str] = field(default_factory=dict)

    def _identity(self) -> tuple[object, ...]:
        return (
            self.implementation,
            self.python_version,
            self.interpreter,
            frozenset(self.abis),
            frozenset(self.platforms),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TagSet):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    @property
    def platform(self) -> str:
        """The most specific platform tag, for messages."""
        specific = [p for p in self.platforms if not p.startswith("linux_")]
        return (specific or list(self.platforms) or ["any"])[0]

    @property
    def name(self) -> str:
        """A short readable name: ``cp312-cp312-manylinux_2_36_aarch64``."""
        return f"{self.interpreter}-{self.abis[0] if self.abis else 'none'}-{self.platform}"

    def digest(self) -> str:
        """A short hash of everything that decides which wheels install (for cache keys)."""
        text = json.dumps([sorted(map(str, part)) if isinstance(part, frozenset) else part
                           for part in self._identity()])  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def pip_args(self) -> list[str]:
        """pip's options that resolve for this tag set instead of the running Python (the
        markers are not among them: `tasks.build.pip` passes those)."""
        args = [
            "--only-binary=:all:",
            "--implementation",
            self.implementation,
            "--python-version",
            self.python_version,
        ]
        for abi in self.abis:
            args += ["--abi", abi]
        for platform in self.platforms:
            args += ["--platform", platform]
        return args

    def supported(self) -> set[Tag]:
        """Every tag of a wheel this interpreter installs (as pip computes them)."""
        version = tuple(int(part) for part in self.python_version.split("."))
        if self.implementation == "cp":
            found = set(packaging_tags.cpython_tags(version, self.abis, self.platforms))
        else:
            found = set(packaging_tags.generic_tags(self.interpreter, self.abis, self.platforms))
        return found | set(
            packaging_tags.compatible_tags(version, self.interpreter, self.platforms)
        )

    def accepts(self, wheel: str) -> bool:
        """Whether the wheel named ``wheel`` (a file name) installs on this tag set."""
        try:
            tags = parse_wheel_filename(wheel)[3]
        except InvalidWheelFilename:
            return False
        return bool(tags & self.supported())

    def to_json(self) -> str:
        """The tag set as the host script prints it."""
        return json.dumps(
            {
                "implementation": self.implementation,
                "python_version": self.python_version,
                "interpreter": self.interpreter,
                "abis": list(self.abis),
                "platforms": list(self.platforms),
                "markers": dict(self.markers),
            },
            separators=(",", ":"),
        )


def parse(text: str) -> TagSet:
    """The `TagSet` in the host script's JSON answer; `ValueError` when it is not one."""
    try:
        data = json.loads(text)
        found = TagSet(
            implementation=str(data["implementation"]),
            python_version=str(data["python_version"]),
            interpreter=str(data["interpreter"]),
            abis=tuple(str(a) for a in data["abis"]),
            platforms=tuple(str(p) for p in data["platforms"]),
            markers={str(k): str(v) for k, v in dict(data.get("markers") or {}).items()},
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not the tags of a Python: {text[:200]!r} ({exc})") from None
    if not found.abis or not found.platforms or "." not in found.python_version:
        raise ValueError(f"not the tags of a Python: {text[:200]!r}")
    return found


def script_text() -> str:
    """The host script's source, to run with ``python -c`` on a host."""
    return SCRIPT.read_text(encoding="utf-8")


def local(python: str | None = None, *, derive: bool = False) -> TagSet:
    """The tag set of ``python`` (default: the Python running fab), by running `SCRIPT`."""
    command = [python or sys.executable, str(SCRIPT), *(["--derive"] if derive else [])]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FabdeployError(f"learning {command[0]}'s tags failed: {result.stderr.strip()}")
    return parse(result.stdout.strip())
