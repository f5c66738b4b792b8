"""An ASGI example for fabdeploy: FastAPI served by uvicorn workers under gunicorn."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse

HERE = Path(__file__).resolve().parent
VERSION = (HERE / "VERSION").read_text().strip() if (HERE / "VERSION").exists() else "dev"

app = FastAPI(title="hello-fastapi")


@app.get("/")
async def index() -> dict[str, str]:
    """The version this release serves, and where it runs from."""
    return {"app": "hello-fastapi", "version": VERSION, "release": HERE.name}


@app.get("/health")
async def health() -> JSONResponse:
    """200 when the app can serve; GREETING (a secret) must be set."""
    ok = bool(os.environ.get("GREETING"))
    body = {"status": "ok" if ok else "missing GREETING", "version": VERSION}
    return JSONResponse(body, status_code=200 if ok else 503)
