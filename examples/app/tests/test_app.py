"""The example app's own tests: the gate `fab test` runs before a deploy."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import app


def test_index_reports_version() -> None:
    response = app.test_client().get("/")
    assert response.status_code == 200
    assert response.get_json()["app"] == "hello"


def test_health_needs_greeting(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GREETING", "hi")
    assert app.test_client().get("/health").status_code == 200
    monkeypatch.delenv("GREETING")
    assert app.test_client().get("/health").status_code == 503
