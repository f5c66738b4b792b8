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


def test_a_custom_worker_class_nobody_provides_names_the_line_and_the_way_out(tmp_path: Path) -> None:  # fmt: skip
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel(wheels, "uvicorn", "uvicorn/__init__.py")
    with pytest.raises(errors.ConfigError) as caught:
        workers.require_worker_class(settings(tmp_path, "fastworkers.Worker"), wheels)
    text = str(caught.value)
    assert "config/staging.env:3: WORKER_CLASS: fastworkers.Worker" in text
    assert "'fastworkers'" in text and "add the package that provides it" in text
    workers.require_worker_class(
        settings(tmp_path, "sync"), wheels
    )  # gunicorn's own: nothing needed


def test_the_server_is_added_when_the_app_does_not_name_it_and_a_pin_wins(tmp_path: Path) -> None:
    gunicorn = "==".join(workers.GUNICORN)
    assert gunicorn == "gunicorn==27.0.1"  # docs/upload.md#the-server says so
    assert workers.server_packages(settings(tmp_path, "sync"), {"flask"}) == (gunicorn,)
    assert workers.server_packages(settings(tmp_path, "gthread"), {"gunicorn", "flask"}) == ()
    uvicorn = settings(tmp_path, "uvicorn_worker.UvicornWorker")
    assert workers.server_packages(uvicorn, {"fastapi"}) == (gunicorn, "uvicorn-worker==0.4.0")
    assert workers.server_packages(uvicorn, {"gunicorn", "uvicorn-worker"}) == ()
    assert workers.server_packages(settings(tmp_path, "gevent"), {"gunicorn"}) == ("gevent==26.9.0",)  # fmt: skip
    assert workers.server_packages(settings(tmp_path, "fastworkers.Worker"), {"x"}) == (gunicorn,)
