"""fabdeploy's uv example: a Flask app whose packages come from uv.lock (no requirements
file, and no gunicorn: fabdeploy adds the server it runs)."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, jsonify, request

HERE = Path(__file__).resolve().parent
VERSION = (HERE / "VERSION").read_text().strip() if (HERE / "VERSION").exists() else "dev"

app = Flask(__name__)


@app.get("/")
def index() -> dict[str, str]:
    """The version this release serves, where it runs from and the server that runs it."""
    return {
        "app": "hello-uv",
        "version": VERSION,
        "release": HERE.name,
        "server": request.environ.get("SERVER_SOFTWARE", ""),
    }


@app.get("/health")
def health():  # type: ignore[no-untyped-def]
    """200 when the app can serve; GREETING (a secret) must be set."""
    ok = bool(os.environ.get("GREETING"))
    return jsonify(status="ok" if ok else "missing GREETING", version=VERSION), 200 if ok else 503
