"""The frontend example's own tests: the gate `fab test` runs before a deploy. They run in
APP_DIR, where static/ is built only if you ran build.py yourself."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bundle
from app import app


def test_index_reports_version() -> None:
    response = app.test_client().get("/")
    assert response.status_code == 200
    assert response.get_json()["app"] == "hello-frontend"


def test_the_bundle_holds_every_module_without_imports() -> None:
    code = bundle.bundle()
    assert "function greet(name)" in code and 'greet("frontend")' in code
    assert "import " not in code and "export " not in code
