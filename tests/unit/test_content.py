"""The release's content digest (`tasks.build.content`): the same files and packages give
the same digest whatever the archive's times; any byte, mode, link or wheel changes it."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from tasks.build import content


def archive(
    path: Path, files: dict[str, tuple[bytes, int]], mtime: int = 0, link: str = ""
) -> Path:
    """A tar.gz of ``files`` (name -> bytes, mode), each with ``mtime``; ``link``: a symlink."""
    with tarfile.open(path, "w:gz") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, mtime
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo("link")
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, link, mtime
            tar.addfile(info)
    return path


FILES = {"app.py": (b"print(1)\n", 0o644), "run.sh": (b"#!/bin/sh\n", 0o755)}


def test_same_files_at_other_times_and_order_give_the_same_digest(tmp_path: Path) -> None:
    one = archive(tmp_path / "a.tar.gz", FILES, mtime=1)
    # a git archive's modes (umask 002) and its directory entries: the same release
    git_like = {"app.py": (b"print(1)\n", 0o664), "run.sh": (b"#!/bin/sh\n", 0o775)}
    with_dir = archive(tmp_path / "c.tar.gz", git_like, mtime=3)
    with tarfile.open(tmp_path / "d.tar", "w") as tar:
        info = tarfile.TarInfo("static")
        info.type, info.mode = tarfile.DIRTYPE, 0o775
        tar.addfile(info)
        for name, (data, mode) in git_like.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    assert content.digest(with_dir, ["a.whl"]) == content.digest(one, ["a.whl"])
    assert content.digest(tmp_path / "d.tar", ["a.whl"]) == content.digest(one, ["a.whl"])
    other = archive(tmp_path / "b.tar.gz", dict(reversed(FILES.items())), mtime=2)
    assert one.read_bytes() != other.read_bytes()
    assert content.digest(one, ["b.whl", "a.whl"]) == content.digest(other, ["a.whl", "b.whl"])


def test_any_byte_mode_link_or_wheel_changes_it(tmp_path: Path) -> None:
    base = content.digest(archive(tmp_path / "a.tar.gz", FILES), ["a.whl"])
    byte = {**FILES, "app.py": (b"print(2)\n", 0o644)}
    mode = {**FILES, "run.sh": (b"#!/bin/sh\n", 0o644)}
    added = {**FILES, "README": (b"", 0o644)}
    found = {
        content.digest(archive(tmp_path / "b.tar.gz", byte), ["a.whl"]),
        content.digest(archive(tmp_path / "c.tar.gz", mode), ["a.whl"]),
        content.digest(archive(tmp_path / "d.tar.gz", added), ["a.whl"]),
        content.digest(archive(tmp_path / "e.tar.gz", FILES, link="app.py"), ["a.whl"]),
        content.digest(archive(tmp_path / "f.tar.gz", FILES), ["a2.whl"]),
        content.digest(archive(tmp_path / "g.tar.gz", FILES), [], "flask\n"),
    }
    assert base not in found and len(found) == 6
