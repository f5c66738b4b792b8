"""Debian root filesystems for the real-systemd test hosts, built once and cached.

``ensure(release)`` returns a ready root (``debootstrap --variant=minbase`` plus
``rootfs-setup.sh`` run in a chroot), building it the first time: about two minutes per
release on this kind of machine. Roots live outside the work tree, under
``$FABDEPLOY_ROOTFS_CACHE`` (default ``/var/cache/fabdeploy-test/rootfs``), one directory per
release and recipe (the package list and setup script are hashed into the name, so a change
to either builds a new root and never reuses a stale one). Hosts never write to a root: each
boots from an overlay of its own (tests/hostkit.py).

The mirror is the one this machine's apt sources name; without one the build is refused.

CLI (what ``scripts/test`` runs before pytest)::

    python -m tests.hosts.rootfs build bookworm trixie   # build missing roots, in parallel
    python -m tests.hosts.rootfs path bookworm           # print the root's path (build if needed)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

#: Debian releases the suite proves, in the order it prefers them.
RELEASES = ("bookworm", "trixie")
#: What every host has besides minbase: real systemd as PID 1, sshd, Python with venv, sudo
#: (and redis-server, disabled: the Django test starts it).
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-venv",
    "sudo",
    "iproute2",
    "procps",
    "redis-server",  # the Django example's Celery broker, started by its test only
)
CACHE_ENV = "FABDEPLOY_ROOTFS_CACHE"
DEFAULT_CACHE = Path("/var/cache/fabdeploy-test/rootfs")
SETUP_SCRIPT = Path(__file__).with_name("rootfs-setup.sh")
#: A file inside a finished root; its absence marks a root still being built (or broken).
READY = "etc/fabdeploy-test-rootfs"
BUILD_TIMEOUT = 900


class RootfsError(RuntimeError):
    """A root filesystem could not be built or found."""


def cache_dir() -> Path:
    """Where roots are kept: ``$FABDEPLOY_ROOTFS_CACHE`` or /var/cache/fabdeploy-test/rootfs."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def recipe_hash() -> str:
    """A short hash of what a root is made of: the package list and the setup script."""
    text = "\n".join(PACKAGES) + "\n" + SETUP_SCRIPT.read_text()
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def root_path(release: str) -> Path:
    """The directory of ``release``'s root for the current recipe (may not exist yet)."""
    if release not in RELEASES:
        raise RootfsError(f"unknown release {release!r}; known: {', '.join(RELEASES)}")
    return cache_dir() / f"{release}-{recipe_hash()}"


def is_ready(release: str) -> bool:
    """Whether ``release``'s root is built and complete."""
    return (root_path(release) / READY).is_file()


def apt_mirror(
    sources: Sequence[Path] = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d")),
) -> str | None:
    """The first Debian archive URL this machine's apt sources name (not the security one)."""
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files += sorted(p for p in source.iterdir() if p.suffix in (".list", ".sources"))
        elif source.is_file():
            files.append(source)
    for path in files:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                url = None
                if line.startswith("URIs:"):
                    url = line.split(None, 1)[1].split()[0] if len(line.split()) > 1 else None
                elif line.startswith("deb "):
                    parts = [p for p in line.split()[1:] if not p.startswith("[")]
                    url = parts[0] if parts else None
                if url and re.match(r"^https?://", url) and "security" not in url:
                    return url.rstrip("/")
    return None


def unavailable_reason() -> str | None:
    """Why roots cannot be built here (``None``: they can)."""
    if os.geteuid() != 0:
        return f"building a root filesystem needs root (euid {os.geteuid()})"
    if not shutil.which("debootstrap", path="/usr/sbin:/usr/bin:/sbin:/bin"):
        return "debootstrap is not installed (apt-get install debootstrap)"
    if apt_mirror() is None:
        return "no Debian mirror in /etc/apt/sources.list{,.d}"
    return None


@contextlib.contextmanager
def _locked(release: str) -> Iterator[None]:
    """Hold the build lock of ``release`` (one builder per release, across processes)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f".{release}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def in_use(root: Path) -> bool:
    """Whether a host's overlay (of this or another test run) has ``root`` as its lower dir."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return True
    return f"lowerdir={root}," in mounts or f"lowerdir={root} " in mounts


def _remove_tree(path: Path) -> None:
    """Delete a half-built root (it may hold the debootstrap's /proc mount)."""
    for mount in ("proc", "sys", "dev/pts"):
        target = path / mount
        if target.is_dir() and os.path.ismount(target):
            subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def _run_logged(args: list[str], log: Path, timeout: float) -> None:
    """Run ``args`` with output appended to ``log``; raise with the log's tail on failure."""
    with open(log, "a") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        proc = subprocess.run(
            args, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RootfsError(f"{args[0]} exited {proc.returncode} (log {log}):\n{tail}")


def build(release: str, *, say: Callable[[str], object] = print) -> Path:
    """Build ``release``'s root unless it is ready; return its path."""
    target = root_path(release)
    if is_ready(release):
        return target
    reason = unavailable_reason()
    if reason:
        raise RootfsError(reason)
    with _locked(release):
        if is_ready(release):  # another process built it meanwhile
            return target
        mirror = apt_mirror()
        assert mirror is not None
        tmp = target.with_name(target.name + ".tmp")
        log = target.with_name(target.name + ".log")
        _remove_tree(tmp)
        log.write_text("")
        started = time.monotonic()
        try:
            _run_logged(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(PACKAGES)}",
                    release,
                    str(tmp),
                    mirror,
                ],
                log,
                BUILD_TIMEOUT,
            )
            shutil.copy(SETUP_SCRIPT, tmp / "tmp" / "rootfs-setup.sh")
            _run_logged(
                ["chroot", str(tmp), "/bin/bash", "/tmp/rootfs-setup.sh"], log, BUILD_TIMEOUT
            )
            (tmp / "tmp" / "rootfs-setup.sh").unlink()
            (tmp / READY).write_text(f"{release} {recipe_hash()}\n")
        except BaseException:
            _remove_tree(tmp)
            raise
        tmp.rename(target)
        for old in cache_dir().glob(f"{release}-*"):  # roots of older recipes, unless booted
            if old.is_dir() and old != target and not old.name.endswith(".tmp") and not in_use(old):
                _remove_tree(old)
        say(f"rootfs: built {release} in {time.monotonic() - started:.0f}s ({target})")
        return target


def build_all(
    releases: Sequence[str], *, say: Callable[[str], object] = print
) -> dict[str, str | None]:
    """Build every missing root in parallel; release -> error text (``None``: ready)."""
    results: dict[str, str | None] = {}

    def one(release: str) -> None:
        try:
            if is_ready(release):
                say(f"rootfs: {release} ready ({root_path(release)})")
            else:
                say(f"rootfs: building {release} (about two minutes, once per machine)")
                build(release, say=say)
            results[release] = None
        except (RootfsError, OSError, subprocess.SubprocessError) as exc:
            results[release] = str(exc)

    with ThreadPoolExecutor(max_workers=len(releases) or 1) as pool:
        list(pool.map(one, releases))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.hosts.rootfs build|path``."""
    parser = argparse.ArgumentParser(prog="python -m tests.hosts.rootfs")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the missing roots")
    b.add_argument("releases", nargs="*", default=list(RELEASES))
    p = sub.add_parser("path", help="print a root's path, building it if needed")
    p.add_argument("release")
    args = parser.parse_args(argv)
    if args.command == "path":
        try:
            print(build(args.release, say=lambda text: print(text, file=sys.stderr)))
        except RootfsError as exc:
            print(f"rootfs: {exc}", file=sys.stderr)
            return 1
        return 0
    reason = unavailable_reason()
    if reason and not all(is_ready(r) for r in args.releases):
        print(f"rootfs: not building ({reason}); real-systemd tests will skip")
        return 0
    failed = {r: e for r, e in build_all(args.releases).items() if e}
    for release, error in failed.items():
        print(f"rootfs: {release} could not be built; its tests will skip:\n{error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
