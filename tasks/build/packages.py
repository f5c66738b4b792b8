"""The packages of a release, resolved locally for each tag set of the fleet.

For every distinct `TagSet` the hosts report, `resolve` makes a *wheelhouse* on the
deploying machine, cached in ``.fabdeploy/wheels/<key>`` while the requirements (and every
file they include with ``-r``/``-c``: `tasks.build.reqfiles`), the tag set and PACKAGE_INDEX stay
the same:

- for the local interpreter's own tag set, ``pip wheel`` (a requirement without a wheel is
  built here, with the same Python and platform as the hosts);
- for any other, ``pip download`` with that tag set's ``--only-binary=:all:``,
  ``--implementation``, ``--python-version``, ``--abi`` and ``--platform`` options (and the
  host's marker values); a requirement without a wheel for it is built from its sdist on a
  host of the tag set (`tasks.build.wheels`), or stops the build naming the package, the
  tags, the hosts and the ways out (`NoWheel`).

Every file is then checked to be a wheel that tag set installs. Hosts of the local tag set
get the packages installed once locally (``pip install --target``: *prebuilt*), console
scripts included with a ``#!python`` shebang that the host rewrites for its venv; the others
get the wheelhouse. Either way, one archive per tag set (`Packages`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import InvalidRequirement, Requirement

from ..core.errors import FabdeployError
from ..core.local import exclusive
from ..core.paths import VENV_MARKER, local_state
from ..core.report import table
from . import lockfiles, pip, pyreq, reqfiles
from . import wheels as build_wheels
from .wheels import NoWheel

if TYPE_CHECKING:
    from ..config import Settings
    from .tags import TagSet
    from .wheels import Builder


#: The wheelhouse's directory inside the packages archive (and the release, until install).
WHEELHOUSE = "wheelhouse"


#: Packages installed once locally (``pip install --target``) for hosts whose tags equal the
#: local Python's: the venv on the host is then made without pip and filled by a copy.
PREBUILT = "prebuilt-site-packages"


#: The prebuilt packages' scripts (console scripts, entry points), ``#!python`` shebangs.
PREBUILT_BIN = "prebuilt-bin"


#: Where a wheelhouse records which wheels pip built rather than downloaded.
ORIGINS = "origins.json"


#: The requirements with each URL, path or VCS reference pinned to the wheel built of it:
#: what pip installs from a wheelhouse (the hosts cannot fetch those references). The files
#: REQUIREMENTS includes are inlined, their constraints in PINNED_CONSTRAINTS beside it.
PINNED = "pinned-requirements.txt"


PINNED_CONSTRAINTS = "pinned-constraints.txt"


#: The shebang of a script that the host points at its venv's Python (as in wheels).
PLACEHOLDER_SHEBANG = b"#!python\n"
#: pip's /bin/sh trampoline for a Python path too long for a shebang: its 2nd and 3rd lines.
EXEC_PREFIX, EXEC_END = b"'''exec' ", b"' '''\n"


@dataclass(frozen=True)
class Packages:
    """The packages of a release for one tag set: an archive for hosts without the venv."""

    tags: TagSet
    hosts: tuple[str, ...]
    folder: Path  # the wheelhouse (cached), whatever ships
    archive: Path
    sha256: str
    prebuilt: bool  # installed locally (PREBUILT), else a wheelhouse (WHEELHOUSE)
    wheels: tuple[str, ...] = ()  # the wheels' file names
    built: dict[str, str] = field(default_factory=dict)  # wheel -> where it was built

    @property
    def size(self) -> int:
        """The archive's size in bytes."""
        return self.archive.stat().st_size


def wheelhouse_command(
    settings: Settings,
    tags: TagSet,
    local: TagSet,
    dest: Path,
    requirements_file: Path | None = None,
) -> list[str]:
    """The pip command that fills ``dest`` with wheels of REQUIREMENTS (or of
    ``requirements_file``) for ``tags``."""
    requirements = str(requirements_file or settings.app_dir / lockfiles.top(settings))
    if tags == local:
        return pip.command(settings, "wheel", "-r", requirements, "-w", str(dest))
    return pip.command(
        settings, "download", *tags.pip_args(), "-r", requirements, "-d", str(dest),
        markers=tags.markers,
    )  # fmt: skip


def missing_requirement(output: str) -> str:
    """The requirement pip found no distribution for, from its error output ("" if none)."""
    found = re.search(r"No matching distribution found for (\S+)", output)
    return found.group(1) if found else ""


def built_wheels(output: str) -> list[str]:
    """The wheels ``pip wheel`` built from source rather than downloaded, from its output."""
    return re.findall(r"Created wheel for \S+: filename=(\S+\.whl)", output)


def cache_key(settings: Settings, requirements: str, tags: TagSet) -> str:
    """The wheelhouse's cache key: the requirements and every file they include (a lock file:
    its hashes too), the tag set and the index resolved from."""
    files = reqfiles.read(settings, requirements, lockfiles.top(settings)).identity
    lock, hashes = lockfiles.locked_hashes(settings)
    locked = "".join(f"{k}:{sorted(v)}" for k, v in sorted(hashes.items())) if lock else ""
    # A path or URL requirement is built from what it names, which its line does not show:
    # its project's wheels are its own (never shared through FABDEPLOY_CACHE_DIR).
    local = [str(settings.app_dir)] if build_wheels.direct_references(files) else []
    text = "\0".join(
        [files, tags.digest(), settings.package_index, *([locked] if lock else []), *local]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_wheels(folder: Path, tags: TagSet) -> list[str]:
    """The wheel file names in ``folder``; any other file, or a wheel ``tags`` refuse, is an
    error (the hosts could not install it)."""
    kept = (VENV_MARKER, ORIGINS, PINNED, PINNED_CONSTRAINTS)
    names = sorted(p.name for p in folder.iterdir() if p.name not in kept)
    wrong = [name for name in names if not tags.accepts(name)]
    if wrong:
        raise FabdeployError(
            f"the wheelhouse for {tags.name} holds files that Python cannot install: "
            f"{', '.join(wrong)}"
        )
    return names


def fill(
    settings: Settings,
    requirements: str,
    tags: TagSet,
    local: TagSet,
    hosts: tuple[str, ...],
    dest: Path,
    builder: Builder | None,
) -> dict[str, str]:
    """Put the wheels of REQUIREMENTS for ``tags`` into ``dest``; return the wheels that were
    built, and where. For another tag set than the local one, a requirement without a wheel
    is built from its sdist by ``builder`` (on a host of that tag set), then the download is
    tried again with that wheel at hand, until every requirement has one. A URL, path or VCS
    requirement is built here first (`wheels.pin_direct`) and pinned to its wheel in
    ``dest/PINNED``, what pip on the hosts installs: the included files inlined (they would
    not be found beside it), their constraints in ``dest/PINNED_CONSTRAINTS``."""
    found = build_wheels.Found(dest.with_name(dest.name + "-built"))
    requirements_file = None
    top = lockfiles.top(settings)
    flat, constraints = reqfiles.flatten(settings, requirements, top)
    direct = build_wheels.direct_references(flat)
    own = settings.app_dir / top
    try:
        if direct or not own.is_file() or own.read_text(encoding="utf-8") != requirements:
            pinned = build_wheels.pin_direct(
                settings,
                flat,
                direct,
                tags,
                hosts,
                found,
                builder if tags != local else None,
            )
            if constraints:
                (dest / PINNED_CONSTRAINTS).write_text(constraints)
                pinned = f"-c {PINNED_CONSTRAINTS}\n{pinned}"
            (dest / PINNED).write_text(pinned)
            requirements_file = dest / PINNED
        while True:
            command = wheelhouse_command(settings, tags, local, dest, requirements_file)
            if found.wheels:
                command += ["--find-links", str(found.folder)]
            result = pip.run_in_app_dir(settings, command)
            if result.returncode == 0:
                built = {name: "locally" for name in built_wheels(result.stdout)}
                lockfiles.verify(settings, dest, {*built, *found.wheels})
                return {**built, **found.wheels}
            missing = missing_requirement(result.stderr + result.stdout)
            if not missing or tags == local:
                raise FabdeployError(
                    f"building the wheelhouse for {tags.name} failed (pip {command[5]}):\n"
                    f"{pip.tail(result)}"
                )
            if builder is None or missing in found.tried:
                raise NoWheel(missing, tags, hosts)
            found.tried.add(missing)
            build_wheels.build_missing(settings, missing, tags, hosts, found, builder)
    finally:
        found.cleanup()


def wheelhouse(
    settings: Settings,
    requirements: str,
    tags: TagSet,
    local: TagSet,
    hosts: tuple[str, ...],
    say: Callable[[str], None],
    builder: Builder | None = None,
) -> Path:
    """Wheels of REQUIREMENTS for ``tags``, cached in ``.fabdeploy/wheels/<key>`` (or
    FABDEPLOY_CACHE_DIR's ``wheels/<key>``, made by one fab at a time: `local.exclusive`)."""
    cache = local_state(settings).wheels / cache_key(settings, requirements, tags)
    if not (cache / VENV_MARKER).exists():
        with exclusive(lock_of(cache)):
            if not (cache / VENV_MARKER).exists():  # not made while this fab waited
                return made_wheelhouse(
                    cache, tags, say,
                    lambda tmp: fill(settings, requirements, tags, local, hosts, tmp, builder),
                )  # fmt: skip
    count = len(check_wheels(cache, tags))
    say(f"wheelhouse for {tags.name}: {count} wheels (cached in {pyreq.shown(settings, cache)})")
    return cache


def made_wheelhouse(
    cache: Path,
    tags: TagSet,
    say: Callable[[str], None],
    filled: Callable[[Path], dict[str, str]],
) -> Path:
    """Make the wheelhouse ``cache`` (`wheelhouse`): ``filled`` puts the wheels into a
    temporary dir (returning those it built, and where), renamed into place."""
    tmp = Path(f"{cache}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started = time.monotonic()
    try:
        built = filled(tmp)
        count = len(check_wheels(tmp, tags))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / ORIGINS).write_text(json.dumps(built, sort_keys=True) + "\n")
    (tmp / VENV_MARKER).write_text("")
    shutil.rmtree(cache, ignore_errors=True)  # an interrupted one (no marker)
    tmp.rename(cache)
    say(f"wheelhouse for {tags.name}: {count} wheels in {time.monotonic() - started:.1f}s")
    return cache


def lock_of(entry: Path) -> Path:
    """The lock file beside a cache entry (`local.exclusive`)."""
    return entry.with_name(f"{entry.name}.lock")


def requirements_of(settings: Settings, wheels: Path) -> Path:
    """The requirements file pip installs a wheelhouse with (pinned, when it has one)."""
    pinned = wheels / PINNED
    return pinned if pinned.is_file() else settings.app_dir / lockfiles.top(settings)


def origins(wheels: Path) -> dict[str, str]:
    """Which wheels of a wheelhouse were built, and where (the others came from the index)."""
    path = wheels / ORIGINS
    return json.loads(path.read_text()) if path.is_file() else {}


def placeholder_shebang(script: Path, python: str) -> None:
    """Give a script that pip wrote for the local ``python`` the ``#!python`` shebang of a
    wheel, which the host rewrites to its venv's Python; other files stay as they are."""
    data = script.read_bytes()
    first, _, rest = data.partition(b"\n")
    if first.startswith(b"#!") and b"python" in first:
        script.write_bytes(PLACEHOLDER_SHEBANG + rest)
    elif first == b"#!/bin/sh" and rest.startswith(EXEC_PREFIX):  # pip's form for long paths
        exec_line, _, body = rest.partition(b"\n")
        if python.encode() in exec_line and body.startswith(EXEC_END):
            script.write_bytes(PLACEHOLDER_SHEBANG + body[len(EXEC_END) :])


def prebuilt(settings: Settings, wheels: Path, say: Callable[[str], None]) -> Path:
    """REQUIREMENTS installed from ``wheels`` into a plain directory, locally, once (cached
    beside the wheelhouse): what a venv's site-packages holds after ``pip install``, its
    scripts in ``bin/`` with ``#!python`` shebangs."""
    cache = wheels.with_name(f"{wheels.name}-site")
    if (cache / VENV_MARKER).exists():
        return cache
    with exclusive(lock_of(cache)):
        if (cache / VENV_MARKER).exists():
            return cache
        tmp = Path(f"{cache}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        started = time.monotonic()
        command = pip.target_install(wheels, tmp, requirements_of(settings, wheels))
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FabdeployError(f"installing the requirements locally failed:\n{pip.tail(result)}")  # fmt: skip
        (tmp / ".lock").unlink(missing_ok=True)  # uv's lock file for the target: not a package's
        for script in sorted((tmp / "bin").glob("*")) if (tmp / "bin").is_dir() else []:
            if script.is_file():
                placeholder_shebang(script, sys.executable)
        (tmp / VENV_MARKER).write_text("")
        shutil.rmtree(cache, ignore_errors=True)
        tmp.rename(cache)
    say(f"packages installed locally for the hosts in {time.monotonic() - started:.1f}s")
    return cache


def packed(wheels: Path, site: Path | None) -> tuple[Path, str]:
    """The packages archive (the prebuilt ``site`` or the ``wheels``) and its sha256, made once
    per wheelhouse and cached beside it. A prebuilt ``site``'s ``bin/`` goes in as
    PREBUILT_BIN, the rest as PREBUILT."""
    source, arcname = (site, PREBUILT) if site is not None else (wheels, WHEELHOUSE)
    archive = wheels.with_name(f"{wheels.name}-{arcname}.tar.gz")
    stamp = archive.with_name(archive.name + ".sha256")
    if archive.exists() and stamp.exists():
        return archive, stamp.read_text().strip()
    with exclusive(lock_of(archive)):
        if archive.exists() and stamp.exists():
            return archive, stamp.read_text().strip()
        tmp = archive.with_name(f"{archive.name}.tmp-{os.getpid()}")
        with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
            for path in sorted(source.iterdir()):
                if path.name in (VENV_MARKER, ORIGINS):
                    continue
                if site is not None and path.name == "bin":
                    tar.add(path, arcname=PREBUILT_BIN)
                else:
                    tar.add(path, arcname=f"{arcname}/{path.name}")
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        tmp.rename(archive)
        stamp.write_text(digest + "\n")
    return archive, digest


def resolve(
    settings: Settings,
    requirements: str,
    targets: dict[TagSet, tuple[str, ...]],
    local: TagSet,
    say: Callable[[str], None],
    builder: Builder | None = None,
) -> list[Packages]:
    """The packages archive of each tag set in ``targets`` (tag set -> its hosts); ``builder``
    builds a requirement without a wheel on a host of a tag set (`tasks.build.wheels`)."""
    found = []
    for tag_set, hosts in targets.items():
        wheels = wheelhouse(settings, requirements, tag_set, local, hosts, say, builder)
        same = settings.prebuilt_packages and tag_set == local
        if tag_set == local:
            for line in marker_drift(wheels, local, tag_set, hosts):
                say(line)
        site = prebuilt(settings, wheels, say) if same else None
        archive, digest = packed(wheels, site)
        names = tuple(check_wheels(wheels, tag_set))
        done = Packages(
            tag_set, hosts, wheels, archive, digest, site is not None, names, origins(wheels)
        )
        say(summary_line(done))
        found.append(done)
    return found


def marker_drift(wheels: Path, local: TagSet, host: TagSet, hosts: tuple[str, ...]) -> list[str]:  # fmt: skip
    """Warnings for the dependencies a host of the local tag set needs but ``wheels`` lacks:
    the local tag set's wheelhouse is resolved with this machine's marker values, and a
    marker may decide otherwise for the host (`python_full_version` most often: redis-py's
    ``async-timeout; python_full_version <= "3.11.2"`` on Debian 12's Python 3.11.2). None
    when either side reported no marker values."""
    if not local.markers or not host.markers or dict(local.markers) == dict(host.markers):
        return []
    here, there = {**local.markers, "extra": ""}, {**host.markers, "extra": ""}
    paths = sorted(wheels.glob("*.whl"))
    have = {wheel_label(p.name)[0] for p in paths}
    found = []
    for path in paths:
        for text in requires_dist(path):
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            marker, name = requirement.marker, re.sub(r"[-_.]+", "-", requirement.name).lower()
            if marker is None or name in have or not marker.evaluate(there):
                continue
            if not marker.evaluate(here):
                project, version, _ = wheel_label(path.name)
                found.append(f"{project} {version} requires `{text}`: not shipped")
    if not found:
        return []
    versions = f"Python {host.markers.get('python_full_version', '?')} on {', '.join(hosts)}"
    local_version = local.markers.get("python_full_version", "?")
    return [
        f"warning: the packages are resolved with this machine's Python {local_version}, "
        f"whose marker values differ from {versions}:",
        *(f"warning:   {line}" for line in found),
        "warning: list such a package in REQUIREMENTS yourself (docs/upload.md#the-packages)",
    ]


def requires_dist(wheel: Path) -> list[str]:
    """The ``Requires-Dist`` values of a wheel's METADATA ([] when it cannot be read)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            name = next((n for n in archive.namelist() if n.endswith(".dist-info/METADATA")), None)
            text = archive.read(name).decode("utf-8", "replace") if name else ""
    except (OSError, zipfile.BadZipFile):
        return []
    return [
        line.split(":", 1)[1].strip()
        for line in text.split("\n\n", 1)[0].splitlines()
        if line.startswith("Requires-Dist:")
    ]


def wheel_label(name: str) -> tuple[str, str, str]:
    """A wheel file name as (project, version, tags)."""
    parts = name[: -len(".whl")].split("-")
    return parts[0].replace("_", "-").lower(), parts[1], "-".join(parts[-3:])


def summary_line(packages: Packages) -> str:
    """One line on the packages of one tag set: where they come from, how they ship, bytes."""
    places = [packages.built[w] for w in packages.wheels if w in packages.built]
    built = ", ".join(f"{places.count(p)} built {p}" for p in sorted(set(places))) or "0 built"
    how = "installed locally, shipped as site-packages" if packages.prebuilt else "wheelhouse"
    return (
        f"packages for {packages.tags.name} ({', '.join(packages.hosts) or 'this machine'}): "
        f"{len(packages.wheels) - len(places)} wheels from the index, {built}; {how}, "
        f"{packages.size >> 10} KiB to each host without the venv"
    )


def describe(packages: Packages) -> str:
    """Per package of one tag set: version, where its wheel comes from, its tags."""
    rows = []
    for name in packages.wheels:
        project, version, wheel_tags = wheel_label(name)
        where = packages.built.get(name)
        source = f"built {where}" if where else "wheel from the index"
        rows.append([project, version, source, wheel_tags])
    lines = table(["package", "version", "source", "wheel tags"], rows).splitlines()
    head = f"{packages.tags.name} ({', '.join(packages.hosts) or 'this machine'}):"
    return "\n".join([head, *("  " + line for line in lines)])
