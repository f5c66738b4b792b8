"""Tag sets of machines the tests do not run on: a server and a laptop."""

from __future__ import annotations

from tasks.build.tags import TagSet


def cpython(version: str, platforms: list[str]) -> TagSet:
    """The tag set of a CPython ``version`` (X.Y) on ``platforms``."""
    short = "cp" + version.replace(".", "")
    return TagSet("cp", version, short, (short, "abi3", "none"), tuple(platforms))


def manylinux(arch: str, glibc_minor: int) -> list[str]:
    """The platform tags of a Linux with glibc 2.<glibc_minor> on ``arch``, newest first."""
    oldest = 5 if arch in ("x86_64", "i686") else 17
    found = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc_minor, oldest - 1, -1)]
    found.insert(found.index(f"manylinux_2_17_{arch}") + 1, f"manylinux2014_{arch}")
    return [*found, f"linux_{arch}"]


#: A Debian 12 server on arm64 with CPython 3.12.
SERVER_ARM = cpython("3.12", manylinux("aarch64", 36))
#: A Debian 13 server on x86_64 with CPython 3.13.
SERVER_313 = cpython("3.13", manylinux("x86_64", 41))
#: A Mac laptop on Apple silicon with CPython 3.11.
LAPTOP = cpython("3.11", ["macosx_14_0_arm64", "macosx_14_0_universal2", "macosx_13_0_arm64"])
