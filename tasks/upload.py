"""Stage upload: build a release once, ship it, unpack it, link it, give it a venv.

Functions other modules compose (the deploy runs them in this order):

- `build(settings, *, allow_dirty=False, targets=None, say=print) -> Build` runs once per
  command, locally: the app's source as a tar.gz, and for each tag set of ``targets`` (host
  name -> `TagSet` from `setup.check`) a packages archive (`tasks.packages`: REQUIREMENTS
  installed locally, or their wheelhouse), cached per requirements (with every file they
  include) and tag set;
- `ship(host, build, facts) -> [(path, sha256)]` removes leftovers of interrupted deploys
  from ``.incoming`` and copies the archives there: the packages of the host's tag set only
  to a host that lacks the release's venv (`needs_packages`);
- `unpack(host, build, archives)` verifies the archives' sha256, removes half-made releases,
  unpacks ``releases/<name>`` and links ``.env``;
- `install(host, build, facts) -> Venv` links the release to ``venvs/<hash>`` (the hash of
  the resolved wheels, the host's Python and tags: `facts_digest`; reused when complete,
  made from the prebuilt packages or with pip otherwise: ``scripts/install.sh``)
  and writes REVISION last: a release without REVISION is half-made;
- `remove_release(host, name)` deletes one release (never `current`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fabric import Connection
from invoke import Collection, task

from . import config, linked, packages, remote, reqfiles, setup, tags, wheelbuild, workers
from .config import Settings
from .errors import FabdeployError, HostError
from .layout import VENV_MARKER, Layout, Revision, release_name
from .lock import local_user, pid_alive
from .packages import LOCAL_STATE, PREBUILT, PREBUILT_BIN, WHEELHOUSE, Packages
from .remote import Host
from .setup import Facts
from .tags import TagSet
from .wheelbuild import Builder


@dataclass
class Build:
    """One release, built once locally: its archive and what it was built from."""

    release: str
    revision: str
    archive: Path  # the app's source
    sha256: str
    requirements: str  # text of REQUIREMENTS ("" when the app has none)
    user: str  # local user@machine
    workdir: Path = field(repr=False)
    #: One packages archive per tag set of the hosts (none with HOST_PACKAGE_INDEX).
    packages: tuple[Packages, ...] = ()
    #: REQUIREMENTS and every file it includes (`reqfiles.Requirements.identity`).
    requirements_files: str = ""

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
        stamp = now or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return Revision(self.revision, self.release, self.user, stamp, deploy_id).format()

    def cleanup(self) -> None:
        """Remove the local temporary directory."""
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass(frozen=True)
class Venv:
    """The virtualenv a release links to."""

    digest: str
    reused: bool
    seconds: float


# --- building ------------------------------------------------------------------------------


def git(app_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``git -C app_dir ARGS`` and capture what it says (never raises on failure)."""
    return subprocess.run(
        ["git", "--no-optional-locks", "-C", str(app_dir), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def git_prefix(app_dir: Path) -> str | None:
    """APP_DIR's path inside its git work tree ("" at the top), or None outside git."""
    if shutil.which("git") is None:
        return None
    inside = git(app_dir, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    return git(app_dir, "rev-parse", "--show-prefix").stdout.strip()


def dirty_files(app_dir: Path, untracked_excludes: Iterable[str] = ()) -> list[str]:
    """Changed, added, deleted or untracked files under APP_DIR (relative to the git root);
    untracked ones matching ``untracked_excludes`` are left out (`--allow-dirty` would not
    ship them either: a project's own `.venv/` is no change)."""
    result = git(app_dir, "status", "--porcelain=v1", "--untracked-files=normal", "--", ".")
    if result.returncode != 0:
        raise FabdeployError(f"git status failed in {app_dir}: {result.stderr.strip()}")
    patterns = tuple(untracked_excludes)
    return [
        line[3:]
        for line in result.stdout.splitlines()
        if line.strip() and not (line.startswith("??") and excluded(line[3:].rstrip("/"), patterns))
    ]


def excluded(relative: str, patterns: Iterable[str]) -> bool:
    """Whether ``relative`` (a/b/c.py) or any of its parts matches one of ``patterns``."""
    parts = relative.split("/")
    for pattern in patterns:
        if fnmatch.fnmatch(relative, pattern):
            return True
        if any(fnmatch.fnmatch(part, pattern) for part in parts):
            return True
    return False


def walk(app_dir: Path, patterns: Iterable[str]) -> list[str]:
    """Files under ``app_dir`` (relative, sorted) not matched by ``patterns``."""
    patterns = tuple(patterns)
    found = []
    for top, dirs, files in os.walk(app_dir):
        rel_top = os.path.relpath(top, app_dir)
        rel_top = "" if rel_top == "." else rel_top + "/"
        dirs[:] = sorted(d for d in dirs if not excluded(rel_top + d, patterns))
        for name in files:
            relative = rel_top + name
            path = Path(top) / name
            if not excluded(relative, patterns) and (path.is_file() or path.is_symlink()):
                found.append(relative)
    return sorted(found)


def content_revision(app_dir: Path, files: list[str]) -> str:
    """A short sha256 of ``files``' names, exec bits and contents."""
    digest = hashlib.sha256()
    for relative in files:
        path = app_dir / relative
        digest.update(relative.encode() + b"\0")
        if path.is_symlink():
            digest.update(b"link:" + os.readlink(path).encode())
        else:
            digest.update(b"x" if os.access(path, os.X_OK) else b"-")
            digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def _secrets_relative(settings: Settings) -> str | None:
    """SECRETS_FILE relative to APP_DIR when it lies inside it (it is never shipped)."""
    path = settings.secrets.path
    if path is None:
        return None
    try:
        return path.resolve().relative_to(settings.app_dir).as_posix()
    except ValueError:
        return None


def require_committed(settings: Settings, allow_dirty: bool) -> list[str]:
    """APP_DIR's uncommitted changes a release would ship (none outside git); unless
    ``allow_dirty``, having any is an error naming them."""
    prefix = git_prefix(settings.app_dir)
    if prefix is None:
        return []
    secret = _secrets_relative(settings)
    changed = [
        f
        for f in (p.removeprefix(prefix) for p in dirty_files(settings.app_dir, settings.excludes))
        if f.split("/")[0] != LOCAL_STATE and f != secret
    ]
    if changed and not allow_dirty:
        shown = ", ".join(changed[:10]) + (
            f" and {len(changed) - 10} more" if len(changed) > 10 else ""
        )
        raise FabdeployError(
            f"uncommitted changes in {settings.app_dir}: {shown}. Commit them, or ship them "
            "anyway with --allow-dirty (or ALLOW_DIRTY=yes)"
        )
    return changed


def _source(
    settings: Settings, allow_dirty: bool, workdir: Path
) -> tuple[str, Callable[[tarfile.TarFile], None]]:
    """The release's revision, and a function adding the source files to a tar."""
    app_dir = settings.app_dir
    secret = _secrets_relative(settings)
    skip = (*settings.excludes, WHEELHOUSE, PREBUILT, PREBUILT_BIN, LOCAL_STATE)
    prefix = git_prefix(app_dir)
    if prefix is None:
        files = [f for f in walk(app_dir, skip) if f != secret]
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
            n for n in names if (app_dir / n).exists() and n != secret and not excluded(n, skip)
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
                if member.name == secret or member.name.startswith("pax_global_header"):
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
    parent = settings.project_dir / LOCAL_STATE / "tmp"
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
    requirement without a wheel for a tag set is built by ``builder`` (`tasks.wheelbuild`).
    ``release`` names the release (``deploy --resume``: the one it continues); default: now."""
    app_dir = settings.app_dir
    if not app_dir.is_dir():
        raise FabdeployError(f"APP_DIR {app_dir} is not a directory")
    req_path = app_dir / settings.requirements
    requirements = req_path.read_text(encoding="utf-8") if req_path.is_file() else ""
    if not requirements:
        raise FabdeployError(
            f"{req_path}: requirements file missing or empty (it must list gunicorn at least)"
        )
    files = reqfiles.read(settings, requirements)  # a missing include: before any pip
    workdir = _workdir(settings)
    try:
        revision, add_source = _source(settings, allow_dirty or settings.allow_dirty, workdir)
        found: list[Packages] = []
        if not settings.host_package_index:
            local = tags.local()
            wanted = targets_by_tags(targets) if targets else {local: ()}
            found = packages.resolve(settings, requirements, wanted, local, say, builder)
            for done in found:
                workers.check(settings, done.folder)
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
        requirements_files=files.identity,
    )
    sizes = [
        f"{p.size >> 10} KiB" + (f" for {p.tags.name}" if len(found) > 1 else "") for p in found
    ]
    extra = f" + packages {', '.join(sizes)}" if sizes else ""
    say(f"built release {name} (revision {revision}, {built.size >> 10} KiB{extra})")
    return built


# --- on the host ---------------------------------------------------------------------------


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


def facts_digest(build: Build, facts: Facts) -> str:
    """The venv key of this release on the host ``facts`` describe."""
    return venv_digest(venv_contents(build, facts.tags), facts.python, facts.tags)


def needs_packages(build: Build, facts: Facts) -> bool:
    """Whether the host ``facts`` describe needs the packages to build this release's venv."""
    return bool(build.packages) and facts_digest(build, facts) not in facts.venvs


def ship(host: Host, build: Build, facts: Facts) -> list[tuple[str, str]]:
    """Copy the source archive to ``.incoming``, and the packages archive of the host's tag
    set when it lacks the release's venv (`needs_packages`). Returns (remote path, sha256)
    pairs. One SFTP session; `install` checks and unpacks them."""
    paths = Layout(host.settings.deploy_root)
    shipped = [(build.archive, build.sha256, f"{build.release}.tar.gz")]
    wanted = build.packages_for(facts.tags)
    if wanted is not None and needs_packages(build, facts):
        shipped.append((wanted.archive, wanted.sha256, f"{build.release}-packages.tar.gz"))
    elif wanted is not None:
        host.say("packages not shipped: the host has this release's venv")
    targets = []
    for local, digest, name in shipped:
        host.put(local, f"{paths.incoming}/{name}")
        targets.append((f"{paths.incoming}/{name}", digest))
    return targets


def install_program(
    host: Host, build: Build, facts: Facts, deploy_id: str = ""
) -> tuple[str, dict[str, object]]:
    """``scripts/install.sh`` and its env: the release's venv (reused, or built from the
    packages) and its REVISION (naming the deploy ``deploy_id``); run as the app user."""
    settings = host.settings
    paths = Layout(settings.deploy_root)
    return remote.script_file("install.sh"), {
        "VENVS": paths.venvs,
        "DIGEST": facts_digest(build, facts),
        "MARKER": VENV_MARKER,
        "PREBUILT": packages.PREBUILT,
        "PREBUILT_BIN": packages.PREBUILT_BIN,
        "PINNED": packages.PINNED,
        "PYTHON": settings.python,
        "RELEASE": paths.release(build.release),
        "REQUIREMENTS": settings.requirements,
        "REVISION_TEXT": build.revision_file(deploy_id=deploy_id),
        "INDEX_URL": settings.host_package_index,
    }


def install(
    host: Host,
    build: Build,
    facts: Facts,
    archives: list[tuple[str, str]],
    deploy_id: str = "",
) -> Venv:
    """In one session: verify the shipped ``archives``, remove leftovers of interrupted
    deploys (in ``.incoming``, half-made releases), unpack ``releases/<name>``, link .env, then
    give it its venv and REVISION (`install_program`). LINKED_DIRS/FILES follow."""
    paths = Layout(host.settings.deploy_root)
    body, env = install_program(host, build, facts, deploy_id)
    started = time.monotonic()
    result = host.script(
        remote.shell("unpack"),
        env={
            "APP_USER": host.app_user,
            "ARCHIVES": "\n".join(f"{digest} {path}" for path, digest in archives),
            "INCOMING": paths.incoming,
            "CURRENT": paths.current,
            "RELEASES": paths.releases,
            "RELEASE": paths.release(build.release),
            "INSTALL_PROGRAM": remote.bash_text(body, env),
        },
        hide=True,
        label="install",
    )
    seconds = time.monotonic() - started
    lines = result.stdout.strip().splitlines()
    for line in lines:
        host.say(line)
    if linked.configured(host):  # shared/ data linked in before the smoke check
        made = linked.apply(host, build.release)
        host.say("linked shared/ paths" + ("" if made == "no change" else f"; {made}"))
    digest = str(env["DIGEST"])
    return Venv(digest, reused=any(line.endswith(" reused") for line in lines), seconds=seconds)


def remove_release(host: Host, name: str) -> None:
    """Delete ``releases/<name>`` unless `current` points to it."""
    paths = Layout(host.settings.deploy_root)
    if not name or "/" in name or name.startswith("."):
        raise HostError(host.name, f"not a release name: {name!r}")
    host.script(
        remote.shell("remove-release"),
        env={"CURRENT": paths.current, "RELEASES": paths.releases, "NAME": name},
        user=host.app_user,
        hide=True,
        label="remove release",
    )


# --- tasks ---------------------------------------------------------------------------------


@task(help={"allow-dirty": "ship uncommitted changes of a git checkout (revision gets -dirty)"})
def release(c, allow_dirty=False):  # type: ignore[no-untyped-def]
    """Build, ship and install a new release without switching to it."""
    from .deploy import release_task  # the step lists live above the stages

    release_task(c, allow_dirty)


def host_targets(hosts: list[Host], settings: Settings) -> dict[str, TagSet]:
    """Each of ``hosts`` -> the wheel tags its Python accepts (learned by `setup.check`,
    PARALLEL at once)."""
    done = remote.each(hosts, setup.check, settings.parallel)
    failed = [error for _, _, error in done if error is not None]
    if failed:
        raise FabdeployError("; ".join(str(error) for error in failed))
    return {host.name: facts.tags for host, facts, _ in done}


@task(
    name="build",
    help={
        "allow-dirty": "build from uncommitted changes of a git checkout",
        "local": "build for this machine's Python only, without asking the hosts",
    },
)
def build_(c, allow_dirty=False, local=False):  # type: ignore[no-untyped-def]
    """Build the release and its packages for the hosts' Pythons and say what would ship."""
    settings = config.load(c)
    asks = not local and (settings.hosts or isinstance(c, Connection))  # -H or HOSTS
    hosts = remote.session(c)[1] if asks else []
    try:
        targets = host_targets(hosts, settings) if hosts else {}
        builder = wheelbuild.host_builder(hosts, targets)
        built = build(settings, allow_dirty=allow_dirty, targets=targets, builder=builder)
    finally:
        for host in hosts:
            host.close()
    try:
        for found in built.packages:
            print(packages.describe(found))
        if not built.packages:
            print(f"packages: none shipped, each host installs from {settings.host_package_index}")
        print(f"source {built.release}.tar.gz: {built.size >> 10} KiB to every host")
    finally:
        built.cleanup()


ns = Collection("upload")
ns.add_task(release, default=True)
ns.add_task(build_)
