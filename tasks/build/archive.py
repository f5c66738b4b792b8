"""The release archive: the app's source as a tar.gz, built once per command, and its
packages once per tag set of the hosts (`Build`)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.clock import release_name, utc_now
from ..core.errors import FabdeployError
from ..core.local import local_user, pid_alive
from ..core.paths import LOCAL_STATE, local_state
from ..core.records import Revision
from . import buildcmd, lockfiles, tags, workers
from . import packages as build_packages
from .content import digest as content_digest
from .packages import PREBUILT, PREBUILT_BIN, WHEELHOUSE
from .source import (
    content_revision,
    excluded,
    git,
    git_prefix,
    never_shipped,
    require_committed,
    secret_files,
    walk,
)

if TYPE_CHECKING:
    from ..config import Settings
    from .buildcmd import Outputs
    from .packages import Packages
    from .tags import TagSet
    from .wheels import Builder


@dataclass
class Build:
    """One release, built once locally: its archive and what it was built from."""

    release: str
    revision: str
    archive: Path  # the app's source
    sha256: str
    requirements: str  # what the packages are resolved from (`lockfiles.Source.wanted`)
    user: str  # local user@machine
    workdir: Path = field(repr=False)
    #: One packages archive per tag set of the hosts (none with HOST_PACKAGE_INDEX).
    packages: tuple[Packages, ...] = ()
    #: Every file the packages come from, and what fabdeploy added (`lockfiles.Source.identity`).
    requirements_files: str = ""
    #: What BUILD_COMMAND made (None without one): `tasks.build.buildcmd`.
    outputs: Outputs | None = None
    #: What a host installs from HOST_PACKAGE_INDEX when not the release's requirements file
    #: as it is (a lock's export, packages added: `lockfiles.Source.for_hosts`).
    host_requirements: str = ""
    #: What the release is made of (`tasks.build.content.digest`): the no-op rule compares it.
    content: str = ""

    @property
    def size(self) -> int:
        return self.archive.stat().st_size

    @property
    def wheelhouse(self) -> bool:
        """Whether some hosts get a wheelhouse (and install it with pip)."""
        return any(not p.prebuilt for p in self.packages)

    @property
    def prebuilt(self) -> bool:
        """Whether some hosts get packages installed locally (and run no pip)."""
        return any(p.prebuilt for p in self.packages)

    def packages_for(self, host_tags: TagSet) -> Packages | None:
        """The packages built for ``host_tags`` (None with HOST_PACKAGE_INDEX)."""
        found = [p for p in self.packages if p.tags == host_tags]
        if self.packages and not found:
            raise FabdeployError(f"no packages were built for {host_tags.name}")
        return found[0] if found else None

    def revision_file(self, now: str | None = None, deploy_id: str = "") -> str:
        """The REVISION file's text for this release (made by the deploy ``deploy_id``)."""
        stamp = now or utc_now()
        return Revision(
            self.revision, self.release, self.user, stamp, deploy_id, self.content
        ).format()

    def cleanup(self) -> None:
        """Remove the local temporary directory."""
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass(frozen=True)
class Venv:
    """The virtualenv a release links to."""

    digest: str
    reused: bool
    seconds: float


def _source(
    settings: Settings, allow_dirty: bool, workdir: Path
) -> tuple[str, Callable[[tarfile.TarFile], None]]:
    """The release's revision, and a function adding the source files to a tar."""
    app_dir = settings.app_dir
    secrets = secret_files(settings)
    skip = (*settings.excludes, WHEELHOUSE, PREBUILT, PREBUILT_BIN, LOCAL_STATE)
    prefix = git_prefix(app_dir)
    if prefix is None:
        files = [f for f in walk(app_dir, skip) if not never_shipped(f, secrets)]
        revision = settings.revision or content_revision(app_dir, files)  # deploy --ref
        return revision, lambda tar: _add_files(tar, app_dir, files)
    changed = require_committed(settings, allow_dirty)
    head = git(app_dir, "rev-parse", "--short=12", "HEAD")
    if head.returncode != 0:
        raise FabdeployError(f"{app_dir} is in a git work tree without commits: commit first")
    revision = head.stdout.strip()
    if changed:
        listed = git(app_dir, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
        names = sorted({n for n in listed.stdout.split("\0") if n})
        files = [
            n
            for n in names
            if (app_dir / n).exists() and not never_shipped(n, secrets) and not excluded(n, skip)
        ]
        return revision + "-dirty", lambda tar: _add_files(tar, app_dir, files)
    tree = f"HEAD:{prefix.rstrip('/')}" if prefix else "HEAD"
    top = git(app_dir, "rev-parse", "--show-toplevel").stdout.strip()
    raw = workdir / "source.tar"
    with raw.open("wb") as handle:
        result = subprocess.run(  # from the top: in a subdirectory git archive limits to it
            ["git", "-C", top, "archive", "--format=tar", tree],
            stdout=handle,
            stderr=subprocess.PIPE,
            check=False,
        )
    if result.returncode != 0:
        raise FabdeployError(f"git archive failed: {result.stderr.decode().strip()}")

    def add(tar: tarfile.TarFile) -> None:
        with tarfile.open(raw) as source:
            for member in source.getmembers():
                if never_shipped(member.name, secrets) or member.name.startswith(
                    "pax_global_header"
                ):
                    continue
                if member.isfile():
                    tar.addfile(member, source.extractfile(member))
                elif member.isdir() or member.issym():
                    tar.addfile(member)

    return revision, add


def _add_files(tar: tarfile.TarFile, app_dir: Path, files: list[str]) -> None:
    for relative in files:
        tar.add(app_dir / relative, arcname=relative, recursive=False)


def _workdir(settings: Settings) -> Path:
    """A fresh ``.fabdeploy/tmp/build-<pid>-*`` dir; removes those of fabs that died."""
    parent = local_state(settings).tmp
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.glob("build-*"):
        pid = old.name.split("-")[1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"build-{os.getpid()}-", dir=parent))


def targets_by_tags(targets: Mapping[str, TagSet]) -> dict[TagSet, tuple[str, ...]]:
    """Host name -> tag set, turned into each distinct tag set -> its hosts (first seen first)."""
    found: dict[TagSet, tuple[str, ...]] = {}
    for host, host_tags in targets.items():
        found[host_tags] = (*found.get(host_tags, ()), host)
    return found


def build(
    settings: Settings,
    *,
    allow_dirty: bool = False,
    targets: Mapping[str, TagSet] | None = None,
    say: Callable[[str], None] = print,
    builder: Builder | None = None,
    release: str = "",
) -> Build:
    """Build the release once: the source (git archive or the directory), and the packages
    for each tag set of ``targets`` (host name -> its tags; none: this machine's). A
    requirement without a wheel for a tag set is built by ``builder`` (`tasks.build.wheels`).
    ``release`` names the release (``deploy --resume``: the one it continues); default: now."""
    app_dir = settings.app_dir
    if not app_dir.is_dir():
        raise FabdeployError(f"APP_DIR {app_dir} is not a directory")
    source = lockfiles.read(settings)  # a missing include, a stale lock: before any pip
    requirements = source.wanted
    if source.added:
        say(f"packages from {source.file}; fabdeploy adds {', '.join(source.added)}, which the app does not list")  # fmt: skip
    workdir = _workdir(settings)
    try:
        revision, add_source = _source(settings, allow_dirty or settings.allow_dirty, workdir)
        add_source, outputs = buildcmd.join(settings, add_source, workdir, say)  # BUILD_COMMAND
        found: list[Packages] = []
        if not settings.host_package_index:
            local = tags.local()
            wanted = targets_by_tags(targets) if targets else {local: ()}
            found = build_packages.resolve(settings, requirements, wanted, local, say, builder)
            for done in found:
                workers.require_worker_class(settings, done.folder)
        name = release or release_name()
        archive = workdir / f"{name}.tar.gz"
        with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
            add_source(tar)
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    built = Build(
        release=name,
        revision=revision,
        archive=archive,
        sha256=digest,
        requirements=requirements,
        user=local_user(),
        workdir=workdir,
        packages=tuple(found),
        requirements_files=source.identity,
        host_requirements=source.for_hosts(),
        outputs=outputs,
        content=content_digest(
            archive,
            (wheel for done in found for wheel in done.wheels),
            "" if found else source.identity,
        ),
    )
    sizes = [
        f"{p.size >> 10} KiB" + (f" for {p.tags.name}" if len(found) > 1 else "") for p in found
    ]
    extra = f" + packages {', '.join(sizes)}" if sizes else ""
    say(f"built release {name} (revision {revision}, {built.size >> 10} KiB{extra})")
    return built


def venv_digest(requirements: str, python: str, host_tags: TagSet) -> str:
    """The venv's key: sha256 of what it holds (`venv_contents`), the remote Python's
    identity and the wheel tags it accepts (a host on another Python or platform never gets
    this venv)."""
    text = f"{requirements}\0{python}\0{host_tags.digest()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def venv_contents(build: Build, host_tags: TagSet) -> str:
    """What a venv of this release holds on a host of ``host_tags``, as text: the resolved
    pins (the sorted file names of the wheels built for those tags), so that a version changed
    anywhere (an included file, a new release on the index) makes a new venv and the same
    set reuses it; with HOST_PACKAGE_INDEX (each host resolves), the requirements and every
    file they include."""
    wanted = build.packages_for(host_tags)
    if wanted is not None:
        return "wheels:\n" + "\n".join(sorted(wanted.wheels))
    return build.requirements_files or build.requirements
