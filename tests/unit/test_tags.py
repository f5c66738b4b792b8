"""Wheel tags: learned from a Python by tasks/scripts/host_tags.py, used to resolve packages."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tasks.build import tags
from tasks.core import shell
from tests.unit.fake_tags import LAPTOP, SERVER_313, SERVER_ARM


def test_the_script_ships_in_the_package_and_prints_this_pythons_tags() -> None:
    assert tags.SCRIPT.parent == shell.SCRIPTS and tags.SCRIPT.is_file()
    found = tags.local()
    assert found.implementation == sys.implementation.name[:2] == "cp"
    assert found.python_version == "{}.{}".format(*sys.version_info[:2])
    assert found.interpreter == "cp{}{}".format(*sys.version_info[:2])
    assert found.abis[0] == found.interpreter and "none" in found.abis
    assert tags.parse(found.to_json()) == found
    assert found.markers["sys_platform"] == sys.platform
    assert found.markers["python_version"] == found.python_version


def test_derived_tags_equal_packagings() -> None:
    """Without packaging the script derives the same tags from sysconfig and the libc."""
    assert tags.local(derive=True) == tags.local()


def test_the_script_runs_where_packaging_cannot_be_imported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "packaging"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('no packaging here')\n")
    (tmp_path / "pip").mkdir()
    (tmp_path / "pip" / "__init__.py").write_text("raise ImportError('no pip here')\n")
    result = subprocess.run(
        [sys.executable, str(tags.SCRIPT)],
        capture_output=True, text=True, check=True, env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert '"source":"derived"' in result.stdout
    assert tags.parse(result.stdout) == tags.local()


def test_parse_refuses_what_is_not_a_tag_set() -> None:
    for text in ("", "Traceback (most recent call last):", '{"implementation": "cp"}'):
        with pytest.raises(ValueError, match="not the tags of a Python"):
            tags.parse(text)


def test_pip_args_carry_the_hosts_tags() -> None:
    args = SERVER_ARM.pip_args()
    assert args[:5] == ["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.12"]
    pairs = list(zip(args[5::2], args[6::2]))
    assert [v for k, v in pairs if k == "--abi"] == ["cp312", "abi3", "none"]
    platforms = [v for k, v in pairs if k == "--platform"]
    assert platforms == list(SERVER_ARM.platforms)
    assert platforms[0] == "manylinux_2_36_aarch64" and "manylinux2014_aarch64" in platforms
    assert not any("x86_64" in p or "macosx" in p for p in platforms)


def test_accepts_follows_the_wheel_tags() -> None:
    compiled = "MarkupSafe-3.0.2-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"
    assert SERVER_ARM.accepts(compiled)
    assert SERVER_ARM.accepts("flask-3.1.0-py3-none-any.whl")
    assert SERVER_ARM.accepts("pydantic_core-2.27.1-cp38-abi3-manylinux_2_28_aarch64.whl")
    assert not SERVER_ARM.accepts(compiled.replace("aarch64", "x86_64"))
    assert not SERVER_ARM.accepts(compiled.replace("cp312", "cp311"))
    assert not SERVER_ARM.accepts("MarkupSafe-3.0.2-cp312-cp312-manylinux_2_39_aarch64.whl")
    assert not SERVER_ARM.accepts("MarkupSafe-3.0.2.tar.gz")
    assert LAPTOP.accepts("MarkupSafe-3.0.2-cp311-cp311-macosx_14_0_arm64.whl")


def test_tag_sets_compare_by_what_they_accept() -> None:
    assert SERVER_ARM != SERVER_313 != LAPTOP
    assert len({SERVER_ARM, SERVER_313, SERVER_ARM}) == 2
    assert SERVER_ARM.name == "cp312-cp312-manylinux_2_36_aarch64"
    assert SERVER_ARM.digest() != SERVER_313.digest()
