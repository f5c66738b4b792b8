"""What a release is made of, as one digest: the no-op rule's evidence.

A release is its source archive (APP_DIR as built: the committed tree, or a plain
directory, with the build step's outputs) and its packages (the wheels resolved for the
hosts). `digest` hashes exactly that: each file's and link's path, executable bit, link target
and bytes, in name order, and the sorted wheel names of every tag set. Not the commit, not
the archive's own bytes (gzip and tar carry times): two commits whose releases ship the same
files and packages have the same digest, so a commit that touches nothing the release is
made of (a README outside APP_DIR, the CI config) deploys nothing. What the hosts are
given besides the release (the env file's settings, the secrets, the units) is compared on
its own (`tasks.host.converge`).

The digest is written into each release's REVISION (``content=``) and read back with the
host's facts; a release made before it existed has none, and only its revision counts.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterable
from pathlib import Path


def member_line(member: tarfile.TarInfo, data: bytes | None) -> str:
    """One file or link as hashed: path, kind, executable or not, link target, content
    sha256. Only the executable bit of the mode counts: it is all git keeps, and a plain
    directory's 0644 is a git archive's 0664."""
    body = hashlib.sha256(data).hexdigest() if data is not None else ""
    kind = "link" if member.issym() else "hardlink" if member.islnk() else "file"
    executable = "x" if member.mode & 0o111 else "-"
    return f"{member.name}\0{kind}\0{executable}\0{member.linkname}\0{body}"


def source_lines(archive: Path) -> list[str]:
    """Every file and link of the release archive as hashed (`member_line`), sorted by path;
    directories are made by what they hold (a git archive lists them, a plain one does not)."""
    lines = []
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isdir():
                continue
            data = None
            if member.isfile():
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
            lines.append(member_line(member, data))
    return sorted(lines)


def digest(archive: Path, wheels: Iterable[str], requirements: str = "") -> str:
    """The release's content digest: its archive's members and its packages (``wheels``:
    every wheel file name resolved, all tag sets; ``requirements``: what the hosts resolve
    from themselves when nothing is shipped)."""
    text = "\n".join(
        [*source_lines(archive), "--packages", *sorted(set(wheels)), "--requirements", requirements]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]
