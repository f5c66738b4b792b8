"""tests/hosts/rootfs.py: which mirror a root is built from, and when a root is stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hosts import rootfs


def test_the_mirror_is_the_first_debian_archive_of_the_apt_sources(tmp_path: Path) -> None:
    listed = tmp_path / "sources.list.d"
    listed.mkdir()
    (listed / "a-security.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n"
    )
    (listed / "b.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.invalid/debian/\nSuites: bookworm\n"
    )
    assert rootfs.apt_mirror([tmp_path / "missing.list", listed]) == "http://mirror.invalid/debian"
    one_line = tmp_path / "sources.list"
    one_line.write_text(
        "# deb http://old.invalid/x bookworm main\ndeb [arch=amd64] https://m.invalid/d bookworm main\n"
    )
    assert rootfs.apt_mirror([one_line]) == "https://m.invalid/d"
    assert rootfs.apt_mirror([tmp_path / "missing.list"]) is None


def test_a_changed_recipe_names_a_new_root(monkeypatch: pytest.MonkeyPatch) -> None:
    before = rootfs.root_path("bookworm")
    monkeypatch.setattr(rootfs, "PACKAGES", (*rootfs.PACKAGES, "redis-server"))
    after = rootfs.root_path("bookworm")
    assert before != after and before.parent == after.parent
    assert after.name.startswith("bookworm-")
    with pytest.raises(rootfs.RootfsError, match="unknown release 'sid'"):
        rootfs.root_path("sid")


def test_the_cache_dir_can_be_moved(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(rootfs.CACHE_ENV, str(tmp_path))
    assert rootfs.root_path("trixie").parent == tmp_path
    assert not rootfs.is_ready("trixie")


def test_a_root_that_cannot_be_built_skips_with_the_reason_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests import conftest

    if conftest.nspawn_unavailable_reason("trixie"):
        pytest.skip("[hostkit] no real-systemd hosts here at all: nothing to build")
    calls: list[str] = []

    def failing(release: str, **_: object) -> Path:
        calls.append(release)
        raise rootfs.RootfsError("debootstrap exited 1: E: Couldn't download packages")

    monkeypatch.setattr(rootfs, "is_ready", lambda release: False)
    monkeypatch.setattr(rootfs, "build", failing)
    monkeypatch.setattr(conftest, "_ROOTFS_FAILED", {})
    for _ in range(2):
        with pytest.raises(
            pytest.skip.Exception,
            match="trixie hosts cannot boot here: building its root filesystem failed: debootstrap exited 1",
        ):
            conftest.require_release("trixie")
    assert calls == ["trixie"]  # tried once per session
