"""The build step: BUILD_COMMAND, run on this machine once per command in a clean copy of the
release's source (what the archive holds, never the work tree), its BUILD_OUTPUTS joining the
release archive even when git ignores them; cached in ``.fabdeploy/build/<key>`` by the hash
of the command, the outputs, the environment and the input files (BUILD_INPUTS)
(docs/upload.md#the-build-step)."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import ConfigError, FabdeployError
from ..core.paths import local_state
from .source import never_shipped, secret_files

if TYPE_CHECKING:
    from ..config import Settings

#: The build caches kept in .fabdeploy/build (the most recently used).
KEEP = 5
#: The command's last lines an error shows.
TAIL = 20
#: Bumped when what the key hashes changes.
KEY_VERSION = "fabdeploy-build-1"

AddSource = Callable[[tarfile.TarFile], None]


@dataclass(frozen=True)
class Outputs:
    """What the build step did: its key, whether the outputs came from the cache, how long
    the command took, and what it made."""

    key: str
    cached: bool
    seconds: float
    paths: tuple[str, ...]  # BUILD_OUTPUTS
    files: int
    size: int  # bytes

    def made(self) -> str:
        """``static (3 files, 12 KiB)``."""
        plural = "" if self.files == 1 else "s"
        return f"{', '.join(self.paths)} ({self.files} file{plural}, {self.size >> 10} KiB)"

    def describe(self) -> str:
        """One line: what the build step did, for the build's output and the summary."""
        if self.cached:
            return f"build: {self.made()} reused from .fabdeploy/build/{self.key} (BUILD_COMMAND not run)"  # fmt: skip
        return f"build: BUILD_COMMAND ran in {self.seconds:.1f}s: {self.made()}, cached as .fabdeploy/build/{self.key}"  # fmt: skip

    def as_dict(self) -> dict[str, object]:
        """For ``plan --json``."""
        return {"key": self.key, "cached": self.cached, "seconds": round(self.seconds, 2),
                "outputs": list(self.paths), "files": self.files, "bytes": self.size}  # fmt: skip


def check(settings: Settings) -> None:
    """The build keys agree: BUILD_OUTPUTS is required with BUILD_COMMAND, and neither it nor
    BUILD_INPUTS means anything without one."""
    if settings.build_command.strip() and not settings.build_outputs:
        raise ConfigError(
            f"{settings.where('BUILD_COMMAND')} is set but BUILD_OUTPUTS is empty: name the "
            "files or directories it makes (relative to APP_DIR), which the release then ships"
        )
    if not settings.build_command.strip():
        for name in ("BUILD_OUTPUTS", "BUILD_INPUTS"):
            if getattr(settings, name.lower()):
                raise ConfigError(f"{settings.where(name)} is set but BUILD_COMMAND is empty")


def under(name: str, paths: Iterable[str]) -> bool:
    """Whether ``name`` (a path in APP_DIR) is one of ``paths`` or inside one."""
    return any(name == path or name.startswith(path + "/") for path in paths)


def matches(name: str, pattern: str) -> bool:
    """Whether ``name`` is a BUILD_INPUTS ``pattern``'s: fnmatch (``*`` crosses ``/``, a
    ``**/`` may match nothing), or a directory the name is inside."""
    pattern = pattern.rstrip("/")
    candidates = {pattern, pattern.replace("**/", "")}
    return any(fnmatch.fnmatchcase(name, p) for p in candidates) or name.startswith(pattern + "/")


def inputs(settings: Settings, members: list[tarfile.TarInfo]) -> list[tarfile.TarInfo]:
    """The source's files the outputs depend on (BUILD_INPUTS; empty: every file), the
    outputs themselves left out; a pattern that matches no file is an error (a typo would
    freeze the cache)."""
    files = [
        m
        for m in members
        if (m.isfile() or m.issym()) and not under(m.name, settings.build_outputs)
    ]
    if not settings.build_inputs:
        return files
    for pattern in settings.build_inputs:
        if not any(matches(m.name, pattern) for m in files):
            raise ConfigError(
                f"{settings.where('BUILD_INPUTS')}: {pattern!r} matches no file of the release "
                "source (a file git does not track is not part of it)"
            )
    return [m for m in files if any(matches(m.name, p) for p in settings.build_inputs)]


def environment(settings: Settings, key: str) -> dict[str, str]:
    """The command's environment: this one's, and FABDEPLOY_ENVIRONMENT, FABDEPLOY_APP_NAME,
    FABDEPLOY_BUILD_KEY (the first two are part of the key)."""
    return {
        **os.environ,
        "FABDEPLOY_ENVIRONMENT": settings.environment,
        "FABDEPLOY_APP_NAME": settings.app_name,
        "FABDEPLOY_BUILD_KEY": key,
    }


def cache_key(settings: Settings, staged: Path) -> str:
    """sha256 of the command, the outputs, the environment's name and app name, and every
    input file's name, exec bit and content (or link target), 16 characters."""
    digest = hashlib.sha256()
    for part in (KEY_VERSION, settings.build_command, ",".join(settings.build_outputs),
                 settings.environment, settings.app_name):  # fmt: skip
        digest.update(part.encode() + b"\0")
    with tarfile.open(staged) as tar:
        for member in sorted(inputs(settings, tar.getmembers()), key=lambda m: m.name):
            digest.update(member.name.encode() + b"\0")
            if member.issym():
                digest.update(b"link:" + member.linkname.encode())
            else:
                handle = tar.extractfile(member)
                assert handle is not None
                digest.update(b"x" if member.mode & 0o111 else b"-")
                digest.update(handle.read())
            digest.update(b"\0")
    return digest.hexdigest()[:16]


def run(
    settings: Settings, staged: Path, key: str, cache: Path, say: Callable[[str], None]
) -> float:
    """Run BUILD_COMMAND in a clean copy of ``staged`` (outside the project: nothing of the
    work tree around it) and store its outputs in ``cache``; the seconds it took. A failure,
    or an output it did not make, raises naming the key's file and line and the last lines
    it printed (all of them in ``.fabdeploy/build/<key>.log``)."""
    say(f"build: running BUILD_COMMAND in a clean copy of the release source: {settings.build_command}")  # fmt: skip
    copy = Path(tempfile.mkdtemp(prefix="fabdeploy-build-"))
    log = cache.with_name(f"{key}.log")
    try:
        with tarfile.open(staged) as tar:
            if hasattr(tarfile, "tar_filter"):
                tar.extractall(copy, filter="tar")
            else:  # pragma: no cover (Python before 3.11.4)
                tar.extractall(copy)  # our own source's tar
        started = time.monotonic()
        with log.open("wb") as handle:
            done = subprocess.run(
                settings.build_command,
                shell=True,  # a command the env file gives, as TEST_COMMAND
                cwd=copy,
                env=environment(settings, key),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                check=False,
            )
        seconds = time.monotonic() - started
        last = "\n".join(log.read_text(errors="replace").strip().splitlines()[-TAIL:])
        shown = f"; its last lines (all in {log}):\n{last}" if last else " (it printed nothing)"
        if done.returncode != 0:
            raise FabdeployError(
                f"{settings.where('BUILD_COMMAND')}: `{settings.build_command}` failed (exit "
                f"{done.returncode}) in a clean copy of the release source{shown}"
            )
        missing = [p for p in settings.build_outputs if not os.path.lexists(copy / p)]
        if missing:
            raise FabdeployError(
                f"{settings.where('BUILD_OUTPUTS')}: `{settings.build_command}` made no "
                f"{', '.join(missing)} in the clean copy of the release source{shown}"
            )
        store(copy, settings.build_outputs, cache)
        return seconds
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def store(copy: Path, paths: tuple[str, ...], cache: Path) -> None:
    """Copy ``paths`` from ``copy`` into ``cache``, whole or not at all (a rename)."""
    partial = cache.with_name(f".{cache.name}.{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    for path in paths:
        source, dest = copy / path, partial / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(source, dest, symlinks=True)
        else:
            shutil.copy2(source, dest, follow_symlinks=False)
    if cache.exists():  # another fab built the same key meanwhile: theirs is as good
        shutil.rmtree(partial, ignore_errors=True)
    else:
        os.replace(partial, cache)


def complete(cache: Path, paths: tuple[str, ...]) -> bool:
    """Whether ``cache`` holds every output."""
    return cache.is_dir() and all(os.path.lexists(cache / p) for p in paths)


def prune(root: Path, keep: str) -> None:
    """Keep the `KEEP` most recently used build caches (``keep`` among them)."""
    found = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in [p for p in found if p.name != keep][KEEP - 1 :]:
        shutil.rmtree(old, ignore_errors=True)
        old.with_name(f"{old.name}.log").unlink(missing_ok=True)


def measure(cache: Path) -> tuple[int, int]:
    """The number of files and bytes under ``cache``."""
    files = size = 0
    for top, _dirs, names in os.walk(cache):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(top, name)).st_size
    return files, size


def join(
    settings: Settings, add_source: AddSource, workdir: Path, say: Callable[[str], None]
) -> tuple[AddSource, Outputs | None]:
    """The build step: with BUILD_COMMAND set, its outputs (built, or from the cache) and a
    function adding the source, less the paths the outputs replace, then the outputs, to a
    tar; without one, ``add_source`` as it is."""
    if not settings.build_command.strip():
        return add_source, None
    check(settings)
    staged = workdir / "release-source.tar"
    with tarfile.open(staged, "w") as tar:
        add_source(tar)
    key = cache_key(settings, staged)
    root = local_state(settings).build
    root.mkdir(parents=True, exist_ok=True)
    cache = root / key
    cached = complete(cache, settings.build_outputs)
    if cached:
        os.utime(cache)  # recently used: kept by `prune`
        seconds = 0.0
    else:
        shutil.rmtree(cache, ignore_errors=True)
        seconds = run(settings, staged, key, cache, say)
    prune(root, key)
    files, size = measure(cache)
    outputs = Outputs(key, cached, seconds, settings.build_outputs, files, size)
    say(outputs.describe())
    secrets = secret_files(settings)

    def shipped(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if never_shipped(info.name, secrets) else info

    def add(tar: tarfile.TarFile) -> None:
        with tarfile.open(staged) as source:
            for member in source.getmembers():
                if not under(member.name, settings.build_outputs):
                    tar.addfile(member, source.extractfile(member) if member.isfile() else None)
        for path in settings.build_outputs:
            tar.add(cache / path, arcname=path, filter=shipped)

    return add, outputs
