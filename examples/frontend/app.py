"""An app with a built frontend: static/app.js is made by bundle.py (BUILD_COMMAND) and
ignored by git; Flask serves static/ at /static/. The page loads the bundle."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, jsonify

HERE = Path(__file__).resolve().parent
VERSION = (HERE / "VERSION").read_text().strip() if (HERE / "VERSION").exists() else "dev"
BUNDLE = HERE / "static" / "app.js"

app = Flask(__name__)

PAGE = """<!doctype html>
<title>hello</title>
<p id="greeting"></p>
<script type="module" src="/static/app.js"></script>
"""


@app.get("/")
def index() -> dict[str, object]:
    """The version this release serves, where it runs from, and whether it has its bundle."""
    return {"app": "hello-frontend", "version": VERSION, "release": HERE.name,
            "bundle": BUNDLE.is_file()}  # fmt: skip


@app.get("/page")
def page() -> str:
    """The HTML page that loads the bundle."""
    return PAGE


@app.get("/health")
def health():  # type: ignore[no-untyped-def]
    """200 when the app can serve: GREETING (a secret) set and the bundle built."""
    ok = bool(os.environ.get("GREETING")) and BUNDLE.is_file()
    return jsonify(status="ok" if ok else "missing GREETING or bundle", version=VERSION), (
        200 if ok else 503
    )
