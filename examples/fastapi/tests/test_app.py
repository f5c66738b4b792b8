"""The FastAPI example's own tests (run with the app's requirements by `fab test`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import app
from fastapi.testclient import TestClient


def test_index_reports_version() -> None:
    response = TestClient(app).get("/")
    assert response.status_code == 200
    assert response.json()["app"] == "hello-fastapi"


def test_health_needs_greeting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREETING", "hi")
    assert TestClient(app).get("/health").status_code == 200
    monkeypatch.delenv("GREETING")
    assert TestClient(app).get("/health").status_code == 503
