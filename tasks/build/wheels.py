"""Requirements without a wheel for a tag set: built once, from their sdist, on one host of
that tag set, and shipped as a wheel to the others.

`tasks.build.packages` calls `build_missing` when ``pip download --only-binary=:all:`` finds no
wheel of a requirement for a tag set that is not the deploying machine's. It downloads the
requirement's source distribution and its build requirements (as wheels for that tag set)
here, and hands them to a `Builder`: `host_builder` builds on the first host of the tag set,
in a throwaway venv under ``/tmp`` (``scripts/build_wheel.sh``, no index reached), and
fetches the wheel back. Without a way to build (no sdist, no builder, or a host without a
compiler), `NoWheel` names the package, the tags, the hosts and the ways out, before any
host changes.
"""

from __future__ import annotations

import re
import shutil
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import parse_wheel_filename

from ..core import shell
from ..core.errors import FabdeployError
from ..core.paths import layout
from . import pip
from .tags import TagSet

if TYPE_CHECKING:
    from ..config import Settings
    from ..ssh.host import Host


#: (tags, sdist, folder of build-requirement wheels, build requirements) -> (wheel, where).
Builder = Callable[[TagSet, Path, Path, list[str]], tuple[Path, str]]


#: Why a URL, path or VCS requirement with compiled code stops a build for another tag set.
DIRECT_REFERENCE = (
    "and it names a URL, path or VCS checkout whose wheel, built here, has compiled code for"
    " this machine's Python and platform only, and no source of it could be built on them"
)


#: PEP 517's build requirements for an sdist that names none.
DEFAULT_BUILD_REQUIRES = ("setuptools>=40.8.0", "wheel")


class NoWheel(FabdeployError):
    """A requirement has no wheel for a tag set and cannot be built for it."""

    def __init__(
        self, requirement: str, tags: TagSet, hosts: tuple[str, ...], reason: str = ""
    ) -> None:
        where = ", ".join(hosts) or "the hosts"
        why = reason or "and it cannot be built for them here"
        super().__init__(
            f"no wheel of {requirement} for {tags.name} ({where}; Python {tags.python_version},"
            f" platform {tags.platform}), {why}. Ways out: publish a wheel of it for"
            " that platform to your PACKAGE_INDEX (`pip wheel` on a machine like those hosts"
            " makes one); install a compiler and the Python headers on those hosts (Debian:"
            " `apt-get install build-essential python3-dev`) so that fabdeploy builds it on one"
            " of them; deploy from a machine with the hosts' Python and platform; or set"
            " HOST_PACKAGE_INDEX so that each host installs with pip from an index itself"
        )
        self.requirement = requirement
        self.tags = tags


@dataclass
class Found:
    """The wheels built so far for one tag set, in ``folder`` (a pip ``--find-links``)."""

    folder: Path
    wheels: dict[str, str] = field(default_factory=dict)  # wheel name -> where it was built
    tried: set[str] = field(default_factory=set)  # requirements already built

    @property
    def sources(self) -> Path:
        """Where the sdists and build requirements are downloaded."""
        return self.folder.with_name(self.folder.name + "-src")

    def cleanup(self) -> None:
        """Remove the folders (the wheels were copied into the wheelhouse by then)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self.sources, ignore_errors=True)


def direct_references(requirements: str) -> list[str]:
    """The lines of a requirements file that name a URL, a path or a VCS checkout instead of
    a project on the index (``./pkg``, ``git+https://...``, ``name @ https://...``, ``-e``)."""
    found = []
    for raw in requirements.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-e", "--editable")):
            found.append(line)
            continue
        if line.startswith("-"):  # -r, -c, --hash and other options
            continue
        try:
            if Requirement(line).url:
                found.append(line)
        except InvalidRequirement:
            found.append(line)
    return found


def pin_direct(
    settings: Settings,
    requirements: str,
    direct: list[str],
    tags: TagSet,
    hosts: tuple[str, ...],
    found: Found,
    builder: Builder | None = None,
) -> str:
    """Build each URL, path or VCS requirement here (``pip wheel --no-deps``) into
    ``found``; return the requirements with each such line pinned to ``NAME==VERSION`` of its
    wheel. A wheel ``tags`` cannot install (compiled for this machine) is built again from
    its source by ``builder``, on a host of ``tags``; without one it is a `NoWheel`."""
    found.folder.mkdir(parents=True, exist_ok=True)
    pinned: dict[str, str] = {}
    for line in direct:
        target = line.split(None, 1)[1] if line.startswith(("-e ", "--editable ")) else line
        label, tree = target, (settings.app_dir / target).resolve()
        if tree.is_dir():  # build a copy: setuptools writes build/ and *.egg-info in place
            copy = found.sources / f"tree-{len(pinned)}" / tree.name
            clean_copy(tree, copy)
            target = str(copy)
        before = set(found.folder.iterdir())
        argv = pip.command(settings, "wheel", "--no-deps", target, "-w", str(found.folder))
        result = pip.run_in_app_dir(settings, argv)
        new = [p for p in set(found.folder.iterdir()) - before if p.suffix == ".whl"]
        if result.returncode != 0 or len(new) != 1:
            raise FabdeployError(
                f"{settings.requirements or 'the app'}: building a wheel of `{line}` here failed:\n"
                f"{pip.tail(result)}"
            )
        built = new[0].name
        if tags.accepts(built):
            found.wheels[built] = f"locally, from {label}"
        else:  # compiled for this machine: build it from its source on a host of ``tags``
            source = source_of(settings, target, built, found.sources / f"direct-{len(pinned)}")
            new[0].unlink()
            if builder is None or source is None:
                raise NoWheel(line, tags, hosts, DIRECT_REFERENCE)
            built = build_sdist(settings, line, source, tags, hosts, found, builder)
        name, version, _, _ = parse_wheel_filename(built)
        pinned[line] = f"{name}=={version}"
    lines = []
    for raw in requirements.splitlines():
        key = raw.split(" #", 1)[0].strip()
        lines.append(pinned.get(key, raw))
    return "\n".join(lines) + "\n"


def sdist_of(settings: Settings, requirement: str, dest: Path) -> Path | None:
    """Download ``requirement``'s source distribution into ``dest``; None when it has none."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.iterdir())
    try:  # only this project from source: its build requirements may come as wheels
        name = Requirement(requirement).name
    except InvalidRequirement:
        return None
    argv = pip.command(settings, "download", "--no-deps", f"--no-binary={name}", requirement)
    if pip.run_in_app_dir(settings, [*argv, "-d", str(dest)]).returncode != 0:
        return None
    new = sorted(set(dest.iterdir()) - before)
    return new[0] if len(new) == 1 else None


def parse_toml(text: str) -> dict:  # type: ignore[type-arg]
    """A TOML document (tomllib; before Python 3.11, tomli when installed, else pip's
    vendored copy of it); a syntax error is a `ValueError`."""
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:
            from pip._vendor import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
    return tomllib.loads(text)  # type: ignore[no-any-return]


def build_requirements(sdist: Path) -> list[str]:
    """The sdist's build requirements (``[build-system] requires`` of its pyproject.toml;
    PEP 517's default without one), plus ``wheel`` for setuptools."""
    requires = list(DEFAULT_BUILD_REQUIRES)
    with tarfile.open(sdist) as tar:
        member = next((m for m in tar.getmembers() if m.name.count("/") == 1
                       and m.name.endswith("/pyproject.toml")), None)  # fmt: skip
        handle = tar.extractfile(member) if member is not None else None
        if handle is not None:
            system = parse_toml(handle.read().decode("utf-8")).get("build-system", {})
            requires = [str(r) for r in system.get("requires", requires)]
    names = {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requires}
    if "setuptools" in names and "wheel" not in names:
        requires.append("wheel")
    return requires


def build_missing(
    settings: Settings,
    requirement: str,
    tags: TagSet,
    hosts: tuple[str, ...],
    found: Found,
    builder: Builder,
) -> None:
    """Build ``requirement`` for ``tags`` with ``builder`` and add the wheel to ``found``."""
    sdist = sdist_of(settings, requirement, found.sources / "sdist")
    if sdist is None:
        raise NoWheel(requirement, tags, hosts, "and no source distribution of it either")
    build_sdist(settings, requirement, sdist, tags, hosts, found, builder)


def build_sdist(
    settings: Settings,
    requirement: str,
    sdist: Path,
    tags: TagSet,
    hosts: tuple[str, ...],
    found: Found,
    builder: Builder,
) -> str:
    """Build ``sdist`` for ``tags`` with ``builder``; add the wheel to ``found``, return its name."""
    requires = build_requirements(sdist)
    deps = found.sources / f"deps-{sdist.name}"
    argv = pip.command(
        settings, "download", *tags.pip_args(), *requires, "-d", str(deps), markers=tags.markers
    )
    result = pip.run_in_app_dir(settings, argv)
    if result.returncode != 0:
        raise NoWheel(
            requirement, tags, hosts,
            f"and its build requirements ({', '.join(requires)}) have no wheels for them: "
            f"{pip.tail(result).splitlines()[-1]}",
        )  # fmt: skip
    wheel, where = builder(tags, sdist, deps, requires)
    if not tags.accepts(wheel.name):
        raise NoWheel(requirement, tags, hosts, f"and the wheel built {where} is {wheel.name}")
    found.folder.mkdir(parents=True, exist_ok=True)
    shutil.move(str(wheel), str(found.folder / wheel.name))
    found.wheels[wheel.name] = where
    return wheel.name


#: What a source tree holds that is not source: earlier builds, caches.
NOT_SOURCE = ("build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".git", ".venv")


def clean_copy(tree: Path, dest: Path) -> None:
    """Copy the source ``tree`` to ``dest`` without build products (`NOT_SOURCE`)."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(tree, dest, ignore=shutil.ignore_patterns(*NOT_SOURCE))


def source_of(settings: Settings, target: str, wheel: str, dest: Path) -> Path | None:
    """A source archive (``NAME-VERSION.tar.gz``, one top folder) of a URL, path or VCS
    requirement whose ``wheel`` was built here, to build it again on a host; None if none."""
    name, version, _, _ = parse_wheel_filename(wheel)
    dest.mkdir(parents=True, exist_ok=True)
    base = dest / f"{name}-{version}"
    folder = (settings.app_dir / target).resolve()
    if folder.is_dir():  # a path requirement: its source tree is the sdist
        clean = dest / "tree" / folder.name
        clean_copy(folder, clean)
        return Path(shutil.make_archive(str(base), "gztar", clean.parent, folder.name))
    got = dest / "download"
    argv = pip.command(settings, "download", "--no-deps", target, "-d", str(got))
    files = (
        sorted(got.iterdir())
        if pip.run_in_app_dir(settings, argv).returncode == 0 and got.is_dir()
        else []
    )
    if len(files) != 1:
        return None
    if files[0].name.endswith(".tar.gz"):
        return files[0]
    if files[0].suffix != ".zip":  # a VCS checkout is saved as a zip: make it a tar.gz
        return None
    unpacked = dest / "unpacked"
    shutil.unpack_archive(str(files[0]), str(unpacked))
    tops = list(unpacked.iterdir())
    root, top = (
        (unpacked, tops[0].name) if len(tops) == 1 and tops[0].is_dir() else (dest, "unpacked")
    )
    return Path(shutil.make_archive(str(base), "gztar", root, top))


def _answer(text: str, key: str) -> str:
    return next(
        (line[len(key) + 1 :] for line in text.splitlines() if line.startswith(key + "=")), ""
    )


def build_on_host(host: Host, tags: TagSet, sdist: Path, deps: Path, requires: list[str]) -> Path:
    """Build ``sdist`` into a wheel on ``host`` (throwaway venv, build requirements from
    ``deps``, no index) and fetch it into the folder of ``deps``."""
    scratch = deps.parent
    archive = scratch / f"build-{sdist.name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(sdist, arcname=f"sdist/{sdist.name}")
        tar.add(deps, arcname="deps")
    remote_archive = f"{layout(host.settings).incoming}/{archive.name}"
    host.put(archive, remote_archive, progress=False)
    host.say(f"building a wheel of {sdist.name} for {tags.name} here (the other hosts get it)")
    result = host.script(
        shell.script_file("build_wheel.sh"),
        env={
            "PYTHON": host.settings.python,
            "ARCHIVE": remote_archive,
            "BUILD_REQUIRES": "\n".join(requires),
        },
        hide=True,
        warn=True,
        label="build wheel",
    )
    work, wheel = _answer(result.stdout, "work"), _answer(result.stdout, "wheel")
    if result.failed or not wheel:
        lines = (result.stderr or "").strip().splitlines()
        reason = next((line for line in reversed(lines) if line.startswith("missing: ")), "")
        last = lines[-1] if lines else f"exit {result.exited}"
        detail = f"{host.name} lacks {reason[9:]}" if reason else f"on {host.name}: {last}"
        raise NoWheel(sdist.name, tags, (host.name,), f"and building it failed: {detail}")
    local = scratch / wheel
    try:
        host.get(f"{work}/out/{wheel}", local)
    finally:
        host.script(
            shell.shell("remove-work"), env={"WORK": work}, hide=True, label="build cleanup"
        )
    return local


def host_builder(hosts: Sequence[Host], targets: Mapping[str, TagSet]) -> Builder:
    """A `Builder` that builds on the first of ``hosts`` whose tags (``targets``: host name ->
    tags) are the tag set asked for."""

    def build(tags: TagSet, sdist: Path, deps: Path, requires: list[str]) -> tuple[Path, str]:
        host = next(h for h in hosts if targets.get(h.name) == tags)
        return build_on_host(host, tags, sdist, deps, requires), f"on {host.name}"

    return build
