"""tasks/build/workers.py: a WORKER_CLASS is refused before any host when no wheel provides it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tasks import config
from tasks.build import workers
from tasks.core import errors


def wheel(folder: Path, name: str, *members: str) -> Path:
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member in (*members, f"{name}-1.0.dist-info/METADATA"):
            archive.writestr(member, "")
    return path


def settings(tmp_path: Path, worker_class: str) -> config.Settings:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text(
        f"APP_NAME=shop\n# ASGI\nWORKER_CLASS={worker_class}\n"
    )
    return config.build("staging", tmp_path)


def test_the_module_a_worker_class_needs() -> None:
    assert workers.needed_module("sync") is None and workers.needed_module("gthread") is None
    assert workers.needed_module("gevent") == "gevent"
    assert workers.needed_module("uvicorn_worker.UvicornWorker") == "uvicorn_worker"


def test_a_worker_class_the_wheels_provide_passes(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel(wheels, "uvicorn_worker", "uvicorn_worker/__init__.py", "uvicorn_worker/_w.py")
    wheel(wheels, "six", "six.py")
    workers.require_worker_class(settings(tmp_path, "uvicorn_worker.UvicornWorker"), wheels)
    assert workers.top_level_modules(wheels.glob("*.whl")) == {"uvicorn_worker", "six"}


def test_a_missing_worker_package_names_the_line_and_the_way_out(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel(wheels, "uvicorn", "uvicorn/__init__.py")
    with pytest.raises(errors.ConfigError) as caught:
        workers.require_worker_class(settings(tmp_path, "uvicorn_worker.UvicornWorker"), wheels)
    text = str(caught.value)
    assert "config/staging.env:3: WORKER_CLASS: uvicorn_worker.UvicornWorker" in text
    assert "'uvicorn_worker'" in text and "uvicorn-worker" in text
    workers.require_worker_class(
        settings(tmp_path, "sync"), wheels
    )  # gunicorn's own: nothing needed
