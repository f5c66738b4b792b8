"""The uv example's own tests: `fab test` runs them in a venv made from uv.lock (the app's
packages, then its dev group as locked)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import app


@pytest.fixture
def client():  # type: ignore[no-untyped-def]
    return app.test_client()


def test_the_home_page_names_the_app_and_its_version(client) -> None:  # type: ignore[no-untyped-def]
    answer = client.get("/").get_json()
    assert answer["app"] == "hello-uv" and answer["version"]


@pytest.mark.parametrize(("greeting", "status"), [("hi", 200), ("", 503)])
def test_health_is_ok_only_with_a_greeting(client, monkeypatch, greeting: str, status: int) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GREETING", greeting)
    assert client.get("/health").status_code == status
