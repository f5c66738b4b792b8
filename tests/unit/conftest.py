"""Fixtures of the unit tests that run the remote scripts with the local bash."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.paths import Layout


@pytest.fixture
def host_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``/etc/<app>`` and ``/run/<app>`` of every `Layout` moved under ``tmp_path/host``, so a
    test that runs the scripts here never touches this machine's /etc or /run."""
    system = tmp_path / "host"
    monkeypatch.setattr(Layout, "etc", property(lambda self: f"{system}/etc/{self.app}"))
    monkeypatch.setattr(Layout, "run", property(lambda self: f"{system}/run/{self.app}"))
    return system
