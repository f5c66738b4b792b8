"""A private Python package index on this machine, for tests and benchmarks.

`build(root, requirements, pythons, extra)` downloads wheels of ``requirements`` for each
CPython X.Y in ``pythons`` (manylinux x86_64) and adds ``extra`` files (an sdist made by the
test), laid out as a PEP 503 "simple" index under ``root/simple`` with an ``index.html`` per
project, which pip reads both as ``file://`` and over HTTP. `serve(root, address)` serves it
over HTTP (``python -m http.server``) and returns the process, for hosts that reach it.
`wheel(folder, name, version)` writes a pure-Python wheel of one module, made here (no
index, no build backend): a package no index and no environment has.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

PLATFORMS = (
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_34_x86_64",
    "linux_x86_64",
)


def build(
    root: Path, requirements: Sequence[str], pythons: Iterable[str], extra: Iterable[Path] = ()
) -> Path:
    """Make ``root/simple`` (see the module doc) and return it."""
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    for version in pythons:
        platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
             "--only-binary=:all:", "--python-version", version, "--implementation", "cp",
             *platforms, "-d", str(files), *requirements],
            check=True, capture_output=True,
        )  # fmt: skip
    for path in extra:
        shutil.copy(path, files / path.name)
    simple = root / "simple"
    for path in files.iterdir():
        project = re.sub(r"[-_.]+", "-", path.name.split("-")[0]).lower()
        (simple / project).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, simple / project / path.name)
    for project in simple.iterdir():
        links = "".join(f'<a href="{f.name}">{f.name}</a>\n' for f in sorted(project.iterdir()))
        (project / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    return simple


def serve(root: Path, address: str) -> tuple[subprocess.Popen[bytes], str]:
    """Serve ``root`` over HTTP on ``address`` and a free port; (process, base URL)."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            address,
            str(port),
            "--directory",
            str(root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(100):
        try:
            with socket.create_connection((address, port), timeout=0.2):
                return proc, f"http://{address}:{port}"
        except OSError:
            if proc.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"], check=False)
    proc.kill()
    raise RuntimeError(f"the index server on {address}:{port} did not start")


def wheel(folder: Path, name: str, version: str, code: str = "") -> Path:
    """A ``py3-none-any`` wheel of the module ``name`` (``VALUE = "<name> <version>"`` unless
    ``code``) in ``folder``."""
    files = {
        f"{name}.py": code or f'VALUE = "{name} {version}"\n',
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: pyindex\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},{len(text.encode())}"
        for path, text in files.items()
    ]
    files[f"{name}-{version}.dist-info/RECORD"] = (
        "\n".join([*record, f"{name}-{version}.dist-info/RECORD,,"]) + "\n"
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for item, text in files.items():
            archive.writestr(item, text)
    return path
