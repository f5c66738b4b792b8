"""The example app fabdeploy's demo deploys: a version page and a health route."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask, jsonify

HERE = Path(__file__).resolve().parent
VERSION = (HERE / "VERSION").read_text().strip() if (HERE / "VERSION").exists() else "dev"

app = Flask(__name__)
log = logging.getLogger("hello")


@app.get("/")
def index() -> dict[str, str]:
    """The version this release serves, and where it runs from."""
    return {"app": "hello", "version": VERSION, "release": HERE.name}


@app.get("/health")
def health():  # type: ignore[no-untyped-def]
    """200 when the app can serve; GREETING (a secret) must be set."""
    ok = bool(os.environ.get("GREETING"))
    return jsonify(status="ok" if ok else "missing GREETING", version=VERSION), 200 if ok else 503


@app.get("/log/<word>")
def write_log(word: str) -> dict[str, str]:
    """Write ``word`` to the app's log (used to show `fab logs --follow`)."""
    print(f"app log: {word}", flush=True)
    return {"logged": word}
