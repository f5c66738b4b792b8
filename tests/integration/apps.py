"""Variants of examples/app for the deploy tests: a version you choose, extra requirements,
and ways to be broken that each safety net of the deploy must catch."""

from __future__ import annotations

import shutil
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "app"
#: The ASGI example (FastAPI, served by uvicorn's worker).
FASTAPI = EXAMPLE.with_name("fastapi")
#: The example with a built, git-ignored frontend bundle (BUILD_COMMAND).
FRONTEND = EXAMPLE.with_name("frontend")

#: What each ``broken`` value does to the app.
BROKEN = {
    # the module cannot be imported: the smoke check's import fails
    "import": (
        "from flask import Flask, jsonify\n",
        "from flask import Flask, jsonify\nimport not_a_module_xyz  # noqa\n",
    ),
    # the health path answers 500: the smoke check on a side port fails
    "health": (
        '    ok = bool(os.environ.get("GREETING"))\n',
        '    print("health: refusing on purpose", flush=True)\n    ok = False\n',
    ),
    # healthy on the smoke check's side port, 503 on the service's port 8000: the switch's own
    # health gate must catch it and put the old release back
    "switch": (
        '    ok = bool(os.environ.get("GREETING"))\n',
        "    from flask import request\n\n"
        '    ok = bool(os.environ.get("GREETING")) and not request.host.endswith(":8000")\n',
    ),
    # the home page raises (a template error) while the health path answers 200: the switch's
    # probe of CANARY_URLS (default /) must catch it, and a canary's bake its access log
    "home": (
        '    """The version this release serves, and where it runs from."""\n',
        '    """The version this release serves, and where it runs from."""\n'
        '    raise RuntimeError("a template error on the home page")\n',
    ),
    # the home page raises on the service's port 8000 only: the smoke check's side port passes
    # it, the switch's own probe of CANARY_URLS must catch it
    "home-live": (
        '    """The version this release serves, and where it runs from."""\n',
        '    """The version this release serves, and where it runs from."""\n'
        "    from flask import request\n\n"
        '    if request.host.endswith(":8000"):\n'
        '        raise RuntimeError("a template error on the home page")\n',
    ),
    # the app's own test suite fails: the local test gate stops the deploy
    "tests": (
        'assert response.get_json()["app"] == "hello"',
        'assert response.get_json()["app"] == "not hello"',
    ),
}


#: Added to every variant: proves which GREETING the app got without ever showing it.
DIGEST_ROUTE = '''

@app.get("/greeting-sha256")
def greeting_sha256() -> dict[str, str]:
    """sha256 of the GREETING secret as the app sees it."""
    import hashlib

    return {"sha256": hashlib.sha256(os.environ.get("GREETING", "").encode()).hexdigest()}
'''

#: Added to every variant: the variables ``?names=A,B`` as a worker sees them (null: unset),
#: and the pid of its master (the app's settings, ENV_<NAME>, are not secrets).
ENV_ROUTE = '''

@app.get("/env")
def env_names() -> dict[str, object]:
    """The variables named in ?names= as this worker has them, and its master's pid."""
    from flask import request

    names = [name for name in request.args.get("names", "").split(",") if name]
    return {"master": os.getppid(), "env": {name: os.environ.get(name) for name in names}}
'''

#: Added to every variant: what the app may do from inside its unit's sandbox, tried by the
#: app itself (docs/security.md#what-the-unit-forbids).
SANDBOX_ROUTE = '''

@app.get("/sandbox-probe")
def sandbox_probe() -> dict[str, object]:
    """sudo's exit status; whether a file can be written in the release and in shared/log (or
    the error); whether /home can be listed; whether PID 1 is visible in /proc."""
    import subprocess

    def attempt(action) -> str:
        try:
            action()
        except OSError as error:
            return error.strerror or repr(error)
        return "ok"

    def write(folder: Path) -> None:
        probe = folder / ".sandbox-probe"
        probe.write_text("probe")
        probe.unlink()

    sudo = subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False)
    return {
        "sudo": sudo.returncode,
        "release": attempt(lambda: write(HERE)),
        "logs": attempt(lambda: write(HERE.parent.parent / "shared" / "log")),
        "home": attempt(lambda: os.listdir("/home")),
        "pid1": os.path.exists("/proc/1"),
    }
'''


def write_app(
    dest: Path,
    version: str,
    *,
    requirements: tuple[str, ...] = (),
    broken: str | None = None,
    uses: str | None = None,
) -> Path:
    """Make ``dest`` a copy of examples/app serving ``version`` (replacing what was there).

    ``requirements`` are appended to requirements.txt; ``uses`` names a module app.py imports
    and reports (``"uses": module.__name__``), proving the venv has it.
    """
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    (dest / "VERSION").write_text(version + "\n")
    if requirements:
        with (dest / "requirements.txt").open("a") as handle:
            handle.write("".join(f"{line}\n" for line in requirements))
    app = dest / "app.py"
    text = app.read_text() + DIGEST_ROUTE + ENV_ROUTE + SANDBOX_ROUTE
    if uses:
        text = text.replace(
            "from flask import Flask, jsonify\n",
            f"from flask import Flask, jsonify\nimport {uses}\n",
        )
        text = text.replace(
            '"release": HERE.name}', f'"release": HERE.name, "uses": {uses}.__name__}}'
        )
    if broken:
        old, new = BROKEN[broken]
        target = dest / "tests" / "test_app.py" if broken == "tests" else app
        source = target.read_text() if target != app else text
        if old not in source:
            raise AssertionError(f"examples/app changed: cannot make it broken={broken!r}")
        source = source.replace(old, new)
        if target == app:
            text = source
        else:
            target.write_text(source)
    app.write_text(text)
    return dest


def write_fastapi(dest: Path, version: str, requirements: str | None = None) -> Path:
    """Make ``dest`` a copy of examples/fastapi serving ``version`` (``requirements``: the
    text of its requirements.txt instead of the example's)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(FASTAPI, dest, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    (dest / "VERSION").write_text(version + "\n")
    if requirements is not None:
        (dest / "requirements.txt").write_text(requirements)
    return dest


def write_frontend(dest: Path, version: str) -> Path:
    """Make ``dest`` a copy of examples/frontend serving ``version``, without a static/ of
    a local build (replacing what was there)."""
    if dest.exists():
        shutil.rmtree(dest)
    skip = shutil.ignore_patterns("__pycache__", ".pytest_cache", "static")
    shutil.copytree(FRONTEND, dest, ignore=skip)
    (dest / "VERSION").write_text(version + "\n")
    return dest


#: The worker classes the switch is measured with, and the app each serves.
SLOW_WORKER_CLASSES = {
    "sync": "WORKER_CLASS=sync\n",
    "gthread": "WORKER_CLASS=gthread\nTHREADS=4\n",
    "uvicorn": "WORKER_CLASS=uvicorn_worker.UvicornWorker\n",
}


def write_slow_app(dest: Path, version: str, worker_class: str, seconds: float = 3.0) -> Path:
    """An app that takes ``seconds`` to import, for ``worker_class`` (a key of
    `SLOW_WORKER_CLASSES`): examples/app (Flask) for sync and gthread, examples/fastapi for
    uvicorn, each sleeping at import as an app with heavy imports does."""
    if worker_class == "uvicorn":
        write_fastapi(dest, version)
    else:
        write_app(dest, version)
    app = dest / "app.py"
    head = "from __future__ import annotations\n"
    text = app.read_text()
    if head not in text:
        raise AssertionError(f"{app.name} changed: cannot make it slow to import")
    slow = f"{head}\nimport time as _time\n\n_time.sleep({seconds})  # a slow import\n"
    app.write_text(text.replace(head, slow, 1))
    return dest
