"""Stage upload: build a release once, ship it, unpack it, link it, give it a venv.

Functions other modules compose (the deploy runs them in this order):

- `build(settings, *, allow_dirty=False, python_versions=(), say=print) -> Build` runs once
  per command, locally: the app's source as a tar.gz, and a packages archive (REQUIREMENTS
  installed locally, or their wheelhouse) cached per set of requirements;
- `ship(host, build, packages=...) -> [(path, sha256)]` removes leftovers of interrupted
  deploys from ``.incoming`` and copies the archives there: the packages only to a host that
  lacks the release's venv (`needs_packages`);
- `unpack(host, build, archives)` verifies the archives' sha256, removes half-made releases,
  unpacks ``releases/<name>`` and links ``.env``;
- `install(host, build, python) -> Venv` links the release to ``venvs/<hash>`` (reused when
  complete, built with pip from the wheelhouse otherwise) and writes REVISION last: a
  release without REVISION is half-made;
- `remove_release(host, name)` deletes one release (never `current`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from invoke import Collection, task

from . import config, remote, setup, workers
from .config import Settings
from .errors import FabdeployError, HostError
from .layout import VENV_MARKER, Layout, Revision, release_name
from .lock import LockOwner, local_user, pid_alive, release_lock, take_lock
from .remote import Host

#: The wheelhouse's directory inside the archive (and the release, until install).
WHEELHOUSE = "wheelhouse"
#: Packages installed once locally (``pip install --target``) for hosts whose Python matches
#: the local one: the venv on the host is then made without pip and filled by a copy.
PREBUILT = "prebuilt-site-packages"
#: fabdeploy's local state in the project (the wheel cache): never shipped, never "dirty".
LOCAL_STATE = ".fabdeploy"


@dataclass
class Build:
    """One release, built once locally: its archive and what it was built from."""

    release: str
    revision: str
    archive: Path  # the app's source
    sha256: str
    requirements: str  # text of REQUIREMENTS ("" when the app has none)
    wheelhouse: bool  # the archive carries wheelhouse/ (no PACKAGE_INDEX)
    prebuilt: bool  # the archive carries prebuilt-site-packages/ (hosts run the local Python)
    user: str  # local user@machine
    workdir: Path = field(repr=False)
    packages: Path | None = (
        None  # prebuilt-site-packages/ or wheelhouse/, for hosts without the venv
    )
    packages_sha256: str = ""

    @property
    def size(self) -> int:
        return self.archive.stat().st_size

    def revision_file(self, now: str | None = None) -> str:
        """The REVISION file's text for this release."""
        stamp = now or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return Revision(self.revision, self.release, self.user, stamp).format()

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


def dirty_files(app_dir: Path) -> list[str]:
    """Changed, added, deleted or untracked files under APP_DIR (relative to the git root)."""
    result = git(app_dir, "status", "--porcelain=v1", "--untracked-files=normal", "--", ".")
    if result.returncode != 0:
        raise FabdeployError(f"git status failed in {app_dir}: {result.stderr.strip()}")
    return [line[3:] for line in result.stdout.splitlines() if line.strip()]


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
        for f in (p.removeprefix(prefix) for p in dirty_files(settings.app_dir))
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
    skip = (*settings.excludes, WHEELHOUSE, PREBUILT, LOCAL_STATE)
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


def wheelhouse(
    settings: Settings,
    requirements: str,
    python_versions: Iterable[str],
    say: Callable[[str], None],
) -> Path:
    """Wheels for REQUIREMENTS built locally, cached in ``.fabdeploy/wheels/<key>``."""
    local = "{}.{}".format(*sys.version_info[:2])
    extra = sorted({v for v in python_versions if v and v != local})
    key_text = "\0".join([requirements, sys.implementation.cache_tag or "", *extra])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    cache = settings.project_dir / LOCAL_STATE / "wheels" / key
    if (cache / VENV_MARKER).exists():
        count = len(list(cache.glob("*.whl")))
        say(f"wheelhouse: {count} wheels (cached in {cache.relative_to(settings.project_dir)})")
        return cache
    tmp = Path(f"{cache}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    req = settings.app_dir / settings.requirements
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    commands = [[*pip, "wheel", "-q", "-r", str(req), "-w", str(tmp)]]
    for version in extra:
        commands.append(
            [
                *pip,
                "download",
                "-q",
                "--only-binary=:all:",
                "--python-version",
                version,
                "-r",
                str(req),
                "-d",
                str(tmp),
            ]
        )
    started = time.monotonic()
    for command in commands:
        result = subprocess.run(
            command, cwd=settings.app_dir, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
            raise FabdeployError(
                f"building the wheelhouse failed ({' '.join(command[5:7])}):\n{tail}"
            )
    (tmp / VENV_MARKER).write_text("")
    shutil.rmtree(cache, ignore_errors=True)
    tmp.rename(cache)
    count = len(list(cache.glob("*.whl")))
    say(f"wheelhouse: {count} wheels built in {time.monotonic() - started:.1f}s")
    return cache


def prebuilt(settings: Settings, wheels: Path, say: Callable[[str], None]) -> Path:
    """REQUIREMENTS installed from ``wheels`` into a plain directory, locally, once (cached
    beside the wheelhouse): what a venv's site-packages holds after ``pip install``."""
    cache = wheels.with_name(f"{wheels.name}-site")
    if (cache / VENV_MARKER).exists():
        return cache
    tmp = Path(f"{cache}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.monotonic()
    command = [
        sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "install",
        "-q", "--no-index", "--find-links", str(wheels), "--target", str(tmp), "--no-compile",
        "--no-warn-script-location", "-r", str(settings.app_dir / settings.requirements),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise FabdeployError(f"installing the requirements locally failed:\n{tail}")
    shutil.rmtree(tmp / "bin", ignore_errors=True)  # console scripts name the local Python
    (tmp / VENV_MARKER).write_text("")
    shutil.rmtree(cache, ignore_errors=True)
    tmp.rename(cache)
    say(f"packages installed locally for the hosts in {time.monotonic() - started:.1f}s")
    return cache


def packed(wheels: Path, site: Path | None) -> tuple[Path, str]:
    """The packages archive (the prebuilt ``site`` or the ``wheels``) and its sha256, made once
    per set of requirements and cached beside the wheelhouse."""
    source, arcname = (site, PREBUILT) if site is not None else (wheels, WHEELHOUSE)
    archive = wheels.with_name(f"{wheels.name}-{arcname}.tar.gz")
    stamp = archive.with_name(archive.name + ".sha256")
    if archive.exists() and stamp.exists():
        return archive, stamp.read_text().strip()
    tmp = archive.with_name(f"{archive.name}.tmp-{os.getpid()}")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for path in sorted(source.iterdir()):
            if path.name != VENV_MARKER:
                tar.add(path, arcname=f"{arcname}/{path.name}")
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    tmp.rename(archive)
    stamp.write_text(digest + "\n")
    return archive, digest


def _workdir(settings: Settings) -> Path:
    """A fresh ``.fabdeploy/tmp/build-<pid>-*`` dir; removes those of fabs that died."""
    parent = settings.project_dir / LOCAL_STATE / "tmp"
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.glob("build-*"):
        pid = old.name.split("-")[1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"build-{os.getpid()}-", dir=parent))


def build(
    settings: Settings,
    *,
    allow_dirty: bool = False,
    python_versions: Iterable[str] = (),
    say: Callable[[str], None] = print,
) -> Build:
    """Build the release archive once: source (git archive or the directory) + wheelhouse."""
    app_dir = settings.app_dir
    if not app_dir.is_dir():
        raise FabdeployError(f"APP_DIR {app_dir} is not a directory")
    req_path = app_dir / settings.requirements
    requirements = req_path.read_text(encoding="utf-8") if req_path.is_file() else ""
    if not requirements:
        raise FabdeployError(
            f"{req_path}: requirements file missing or empty (it must list gunicorn at least)"
        )
    workdir = _workdir(settings)
    try:
        revision, add_source = _source(settings, allow_dirty or settings.allow_dirty, workdir)
        wheels = site = None
        if not settings.package_index:
            versions = {v for v in python_versions if v}
            wheels = wheelhouse(settings, requirements, versions, say)
            workers.check(settings, wheels)
            local = "{}.{}".format(*sys.version_info[:2])
            if settings.prebuilt_packages and versions == {local}:
                site = prebuilt(settings, wheels, say)
        name = release_name()
        archive = workdir / f"{name}.tar.gz"
        with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
            add_source(tar)
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        packages, packages_sha256 = (None, "") if wheels is None else packed(wheels, site)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    built = Build(
        release=name,
        revision=revision,
        archive=archive,
        sha256=digest,
        requirements=requirements,
        wheelhouse=wheels is not None and site is None,
        prebuilt=site is not None,
        user=local_user(),
        workdir=workdir,
        packages=packages,
        packages_sha256=packages_sha256,
    )
    extra = f" + packages {packages.stat().st_size >> 10} KiB" if packages else ""
    say(f"built release {name} (revision {revision}, {built.size >> 10} KiB{extra})")
    return built


# --- on the host ---------------------------------------------------------------------------


def venv_digest(requirements: str, python: str) -> str:
    """The venv's key: sha256 of the requirements text and the remote Python's identity."""
    return hashlib.sha256(f"{requirements}\0{python}".encode()).hexdigest()[:16]


def needs_packages(build: Build, python: str, venvs: Iterable[str]) -> bool:
    """Whether a host with these complete ``venvs`` needs the packages to build this release's."""
    return build.packages is not None and venv_digest(build.requirements, python) not in venvs


def ship(host: Host, build: Build, *, packages: bool = True) -> list[tuple[str, str]]:
    """Empty ``.incoming`` of interrupted deploys' leftovers, then copy the source archive (and,
    with ``packages``, the packages archive) there. Returns (remote path, sha256) pairs."""
    paths = Layout(host.settings.deploy_root)
    result = host.script(
        """
shopt -s nullglob dotglob
left=("$INCOMING"/*)
if [ ${#left[@]} -gt 0 ]; then
  echo "removing ${#left[@]} leftover(s) of an interrupted deploy from $INCOMING"
  rm -rf -- "${left[@]}"
fi
""",
        env={"INCOMING": paths.incoming},
        hide=True,
        label="clean .incoming",
    )
    if result.stdout.strip():
        host.say(result.stdout.strip())
    shipped = [(build.archive, build.sha256, f"{build.release}.tar.gz")]
    if packages and build.packages is not None:
        shipped.append((build.packages, build.packages_sha256, f"{build.release}-packages.tar.gz"))
    elif build.packages is not None:
        host.say("packages not shipped: the host has this release's venv")
    targets = []
    for local, digest, name in shipped:
        host.put(local, f"{paths.incoming}/{name}")
        targets.append((f"{paths.incoming}/{name}", digest))
    return targets


def unpack(host: Host, build: Build, archives: list[tuple[str, str]]) -> None:
    """Verify the archives, remove half-made releases, unpack ``releases/<name>``, link .env."""
    settings = host.settings
    paths = Layout(settings.deploy_root)
    result = host.script(
        remote.AS_APP
        + """
while read -r sum archive; do
  echo "$sum  $archive" | sha256sum --check --quiet --strict \
    || { echo "archive checksum mismatch after upload: $archive" >&2; exit 3; }
done <<< "$ARCHIVES"
current=$(readlink "$CURRENT" 2>/dev/null || true)
shopt -s nullglob
for dir in "$RELEASES"/*/; do
  dir=${dir%/}
  if [ ! -e "$dir/REVISION" ] && [ "${current##*/}" != "${dir##*/}" ]; then
    echo "removing half-made release ${dir##*/}"
    as_app rm -rf -- "$dir"
  fi
done
as_app mkdir -- "$RELEASE"
while read -r sum archive; do
  as_app tar -xzf "$archive" -C "$RELEASE" --no-same-owner --no-same-permissions
  rm -f -- "$archive"
done <<< "$ARCHIVES"
as_app ln -sfn ../../shared/.env "$RELEASE/.env"
""",
        env={
            "APP_USER": host.app_user,
            "ARCHIVES": "\n".join(f"{digest} {path}" for path, digest in archives),
            "CURRENT": paths.current,
            "RELEASES": paths.releases,
            "RELEASE": paths.release(build.release),
        },
        hide=True,
        label="unpack",
    )
    for line in result.stdout.strip().splitlines():
        host.say(line)
    host.say(f"unpacked releases/{build.release}")


def install(host: Host, build: Build, python: str) -> Venv:
    """Link the release to its venv (reused, or built from the wheelhouse); write REVISION."""
    settings = host.settings
    paths = Layout(settings.deploy_root)
    digest = venv_digest(build.requirements, python)
    if settings.package_index:
        source = f"--index-url {remote.quote(settings.package_index)}"
    else:
        source = '--no-index --find-links "$RELEASE/wheelhouse"'
    started = time.monotonic()
    result = host.script(
        f"""
venv="$VENVS/$DIGEST"
exec 9>>"$VENVS/.$DIGEST.lock"
flock -w 900 9 || {{ echo "venv $DIGEST is locked by another install" >&2; exit 3; }}
if [ -f "$venv/$MARKER" ]; then
  echo "venv $DIGEST reused"
else
  if [ -e "$venv" ]; then echo "removing unfinished venv $DIGEST"; rm -rf -- "$venv"; fi
  if [ -d "$RELEASE/$PREBUILT" ]; then  # packages installed locally: no pip on the host
    "$PYTHON" -m venv --without-pip "$venv"
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    cp -a -- "$RELEASE/$PREBUILT/." "$site/"
    how="from the prebuilt packages"
  else
    "$PYTHON" -m venv "$venv"
    log="$venv/pip-install.log"
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input \
         {source} -r "$RELEASE/$REQUIREMENTS" >"$log" 2>&1; then
      tail -n 25 "$log" >&2
      echo "pip install failed; the unfinished venv $DIGEST will be rebuilt next time" >&2
      exit 3
    fi
    how="with pip"
  fi
  "$venv/bin/python" -c 'import gunicorn' 2>/dev/null \
    || {{ echo "gunicorn is not installed by $REQUIREMENTS: add it" >&2; exit 3; }}
  touch "$venv/$MARKER"
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "venv $DIGEST built $how ($(find "$site" -maxdepth 1 -name '*.dist-info' | wc -l) packages)"
fi
ln -sfn "../../venvs/$DIGEST" "$RELEASE/.venv"
rm -rf -- "$RELEASE/wheelhouse" "$RELEASE/$PREBUILT"
printf '%s' "$REVISION_TEXT" > "$RELEASE/REVISION.tmp"
mv -f "$RELEASE/REVISION.tmp" "$RELEASE/REVISION"
""",
        env={
            "VENVS": paths.venvs,
            "DIGEST": digest,
            "MARKER": VENV_MARKER,
            "PREBUILT": PREBUILT,
            "PYTHON": settings.python,
            "RELEASE": paths.release(build.release),
            "REQUIREMENTS": settings.requirements,
            "REVISION_TEXT": build.revision_file(),
        },
        user=host.app_user,
        hide=True,
        label="install",
    )
    seconds = time.monotonic() - started
    lines = result.stdout.strip().splitlines()
    for line in lines:
        host.say(line)
    return Venv(digest, reused=any(line.endswith(" reused") for line in lines), seconds=seconds)


def remove_release(host: Host, name: str) -> None:
    """Delete ``releases/<name>`` unless `current` points to it."""
    paths = Layout(host.settings.deploy_root)
    if not name or "/" in name or name.startswith("."):
        raise HostError(host.name, f"not a release name: {name!r}")
    host.script(
        """
current=$(readlink "$CURRENT" 2>/dev/null || true)
if [ "${current##*/}" = "$NAME" ]; then echo "refusing to remove the current release" >&2; exit 3; fi
rm -rf -- "$RELEASES/$NAME"
""",
        env={"CURRENT": paths.current, "RELEASES": paths.releases, "NAME": name},
        user=host.app_user,
        hide=True,
        label="remove release",
    )


# --- tasks ---------------------------------------------------------------------------------


@task(help={"allow-dirty": "ship uncommitted changes of a git checkout (revision gets -dirty)"})
def release(c, allow_dirty=False):  # type: ignore[no-untyped-def]
    """Build, ship and install a new release without switching to it."""
    settings, hosts = remote.session(c)
    facts = {host.name: setup.check(host) for host in hosts}
    versions = {f.python_version for f in facts.values()}
    built = build(settings, allow_dirty=allow_dirty, python_versions=versions)
    owner = LockOwner.mine()
    switch = settings.command(f"rollback --release {built.release}")
    try:
        for host in hosts:
            take_lock(host, owner)  # .incoming and half-made releases are a deploy's to clean
            try:
                fact = facts[host.name]
                archives = ship(
                    host, built, packages=needs_packages(built, fact.python, fact.venvs)
                )
                unpack(host, built, archives)
                install(host, built, facts[host.name].python)
            finally:
                release_lock(host, owner)
            host.say(f"release {built.release} ready, not switched: `{switch}` switches to it")
    finally:
        built.cleanup()


@task(
    name="build",
    help={"allow-dirty": "build from uncommitted changes of a git checkout"},
)
def build_(c, allow_dirty=False):  # type: ignore[no-untyped-def]
    """Build the release archive and wheelhouse locally, once (a dry run of the upload)."""
    settings = config.load(c)
    built = build(settings, allow_dirty=allow_dirty)
    built.cleanup()


ns = Collection("upload")
ns.add_task(release, default=True)
ns.add_task(build_)
