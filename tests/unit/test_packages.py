"""Packages resolved on the deploying machine for each host's tags, and the venv made from
them on a host (tasks/scripts/install.sh run here, in a tmp dir)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
from invoke import Context
from packaging.utils import parse_wheel_filename

from tasks import config, upload
from tasks.build import packages, pip, tags
from tasks.build import wheels as build_wheels
from tasks.build.tags import TagSet
from tasks.core import errors, shell
from tasks.core.paths import VENV_MARKER
from tasks.host import facts
from tasks.host.facts import Facts
from tasks.ssh import session
from tests.unit.fake_tags import LAPTOP, SERVER_313, SERVER_ARM


def settings(tmp_path: Path, requirements: str, extra: str = "") -> config.Settings:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "requirements.txt").write_text(requirements)
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\nAPP_DIR=app\n" + extra)
    return config.build("staging", tmp_path)


def options(command: list[str]) -> dict[str, list[str]]:
    """pip's ``--option value`` pairs in ``command``."""
    found: dict[str, list[str]] = {}
    for flag, value in zip(command, command[1:]):
        if flag.startswith("-") and "=" not in flag and not value.startswith("-"):
            found.setdefault(flag, []).append(value)
    return found


def test_pip_downloads_for_the_hosts_tags_not_the_laptops(tmp_path: Path) -> None:
    """Deploying from a Mac (CPython 3.11, arm64) to an arm64 server on CPython 3.12."""
    conf = settings(tmp_path, "flask\n", "PACKAGE_INDEX=https://pypi.example/simple\n")
    command = packages.wheelhouse_command(conf, SERVER_ARM, LAPTOP, tmp_path / "w")
    assert command[:3] == [sys.executable, "-m", "pip"] and "download" in command
    assert "--only-binary=:all:" in command
    found = options(command)
    assert found["--implementation"] == ["cp"]
    assert found["--python-version"] == ["3.12"]
    assert found["--abi"] == ["cp312", "abi3", "none"]
    assert found["--platform"] == list(SERVER_ARM.platforms)
    assert not any("macosx" in p for p in found["--platform"])
    assert found["--index-url"] == ["https://pypi.example/simple"]  # the index we resolve from
    assert found["-d"] == [str(tmp_path / "w")]
    # the local tag set itself is built with pip wheel (sdists too), without tag options
    local = packages.wheelhouse_command(conf, LAPTOP, LAPTOP, tmp_path / "w")
    assert "wheel" in local and "--platform" not in local and "--only-binary=:all:" not in local


def test_requirement_markers_are_evaluated_with_the_hosts_values(tmp_path: Path) -> None:
    """The real thing (network): a Windows-only requirement, resolved on Linux for a Windows
    host, is downloaded; for a Linux host it is not."""
    requirements = 'colorama ; sys_platform == "win32"\nsix\n'
    conf = settings(tmp_path, requirements)
    windows = TagSet(
        "cp", "3.12", "cp312", ("cp312", "abi3", "none"), ("win_amd64",),
        markers={"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt",
                 "python_version": "3.12", "python_full_version": "3.12.4"},
    )  # fmt: skip
    command = packages.wheelhouse_command(conf, windows, tags.local(), tmp_path / "w")
    assert command[1] == str(pip.FOR_HOST) and json.loads(command[2])["sys_platform"] == "win32"
    found = packages.wheelhouse(conf, requirements, windows, tags.local(), ("win1",), print)
    names = {parse_wheel_filename(p.name)[0] for p in found.glob("*.whl")}
    assert names == {"colorama", "six"}
    linux = replace(
        windows, platforms=("manylinux_2_36_x86_64",), markers={"sys_platform": "linux"}
    )
    found = packages.wheelhouse(conf, requirements, linux, tags.local(), ("web1",), print)
    assert {parse_wheel_filename(p.name)[0] for p in found.glob("*.whl")} == {"six"}


def test_prebuilt_packages_only_for_hosts_with_the_local_tags(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    conf = settings(tmp_path, "gunicorn\n")
    made: list[tuple[str, Path]] = []

    def fake_wheelhouse(settings, requirements, tag_set, local, hosts, say, builder=None):  # type: ignore[no-untyped-def]
        folder = tmp_path / "wheels" / tag_set.interpreter
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "gunicorn-23.0.0-py3-none-any.whl").write_bytes(b"zip")
        made.append(("wheelhouse", folder))
        return folder

    def fake_prebuilt(settings, wheels, say):  # type: ignore[no-untyped-def]
        site = wheels.with_name(wheels.name + "-site")
        (site / "gunicorn").mkdir(parents=True, exist_ok=True)
        (site / "bin").mkdir(exist_ok=True)
        (site / "bin" / "gunicorn").write_text("#!python\nprint('hi')\n")
        made.append(("prebuilt", wheels))
        return site

    monkeypatch.setattr(packages, "wheelhouse", fake_wheelhouse)
    monkeypatch.setattr(packages, "prebuilt", fake_prebuilt)
    targets = {SERVER_313: ("web1",), SERVER_ARM: ("web2", "web3")}
    said: list[str] = []
    found = packages.resolve(conf, "gunicorn\n", targets, SERVER_313, said.append)
    assert [p.prebuilt for p in found] == [True, False]
    assert [kind for kind, _ in made] == ["wheelhouse", "prebuilt", "wheelhouse"]
    with tarfile.open(found[0].archive) as tar:
        assert sorted(tar.getnames()) == [
            "prebuilt-bin", "prebuilt-bin/gunicorn",
            "prebuilt-site-packages/gunicorn",
        ]  # fmt: skip
    with tarfile.open(found[1].archive) as tar:
        assert tar.getnames() == ["wheelhouse/gunicorn-23.0.0-py3-none-any.whl"]
    assert said[0].startswith("packages for cp313-cp313-manylinux_2_41_x86_64 (web1): ")
    assert "1 wheels from the index, 0 built; installed locally" in said[0]
    assert said[1].startswith("packages for cp312-cp312-manylinux_2_36_aarch64 (web2, web3)")
    table = packages.describe(found[1])
    assert "gunicorn  23.0.0   wheel from the index  py3-none-any" in table
    # from a laptop whose tags no host shares, nothing is prebuilt
    made.clear()
    found = packages.resolve(conf, "gunicorn\n", targets, LAPTOP, said.append)
    assert [p.prebuilt for p in found] == [False, False] and "prebuilt" not in dict(made)


def test_a_wheel_the_host_cannot_install_is_refused(tmp_path: Path) -> None:
    (tmp_path / "gunicorn-23.0.0-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "MarkupSafe-3.0.2-cp312-cp312-macosx_11_0_arm64.whl").write_bytes(b"")
    with pytest.raises(errors.FabdeployError, match=r"cannot install: MarkupSafe-3\.0\.2-cp312"):
        packages.check_wheels(tmp_path, SERVER_ARM)


def test_no_wheel_for_the_hosts_names_package_tags_hosts_and_ways_out() -> None:
    output = (
        "ERROR: Could not find a version that satisfies the requirement tinyext==0.1 "
        "(from versions: none)\nERROR: No matching distribution found for tinyext==0.1\n"
    )
    assert packages.missing_requirement(output) == "tinyext==0.1"
    message = str(build_wheels.NoWheel("tinyext==0.1", SERVER_ARM, ("web1", "web2")))
    assert "no wheel of tinyext==0.1 for cp312-cp312-manylinux_2_36_aarch64 (web1, web2" in message
    for way_out in ("PACKAGE_INDEX", "HOST_PACKAGE_INDEX", "deploy from a machine", "compiler"):
        assert way_out in message


def test_pip_wheel_output_names_the_wheels_built_here() -> None:
    output = (
        "Building wheels for collected packages: tinyext\n"
        "  Building wheel for tinyext (pyproject.toml): started\n"
        "  Created wheel for tinyext: filename=tinyext-0.1-cp311-cp311-linux_x86_64.whl "
        "size=4 sha256=ab\nSuccessfully built tinyext\n"
    )
    assert packages.built_wheels(output) == ["tinyext-0.1-cp311-cp311-linux_x86_64.whl"]


def test_pip_download_from_the_index_gets_wheels_for_the_hosts_tags(tmp_path: Path) -> None:
    """The real thing (network): packages with compiled parts, for an arm64 CPython 3.12."""
    conf = settings(tmp_path, "markupsafe\npydantic-core\n")
    said: list[str] = []
    wheels = packages.wheelhouse(
        conf, "markupsafe\npydantic-core\n", SERVER_ARM, tags.local(), ("web1",), said.append
    )
    names = sorted(p.name for p in wheels.glob("*") if p.name not in (VENV_MARKER, "origins.json"))
    assert {parse_wheel_filename(n)[0] for n in names} >= {"markupsafe", "pydantic-core"}
    supported = SERVER_ARM.supported()
    for name in names:
        assert name.endswith(".whl"), name
        wheel_tags = parse_wheel_filename(name)[3]
        assert wheel_tags & supported, f"{name} does not install on {SERVER_ARM.name}"
    compiled = [n for n in names if not n.endswith("-none-any.whl")]
    assert compiled and all("aarch64" in n for n in compiled)
    [line] = said
    assert re.fullmatch(rf"wheelhouse for {SERVER_ARM.name}: {len(names)} wheels in \d+\.\ds", line)


# --- the venv on the host ------------------------------------------------------------------


def run_install(release: Path, venvs: Path, packages_archive: Path) -> str:
    """tasks/scripts/install.sh as `install.install` sends it, run here with bash."""
    with tarfile.open(packages_archive) as tar:
        tar.extractall(release)  # what unpack does on the host
    env = {
        "VENVS": venvs, "DIGEST": "0123456789abcdef", "MARKER": VENV_MARKER,
        "PREBUILT": packages.PREBUILT, "PREBUILT_BIN": packages.PREBUILT_BIN,
        "PYTHON": sys.executable, "RELEASE": release, "REQUIREMENTS": "requirements.txt",
        "REVISION_TEXT": "revision=abc\n", "INDEX_URL": "",
    }  # fmt: skip
    text = shell.bash_text(shell.script_file("install.sh"), env)
    result = subprocess.run(["bash", "-c", text], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_venv_from_prebuilt_packages_has_console_scripts_for_its_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installer: str
) -> None:
    """The prebuilt packages, installed locally by uv (fabdeploy depends on it) or by pip
    (where uv is missing), make a working venv on the host."""
    from tasks.build import pip

    assert pip.uv_binary() is not None  # installed with fabdeploy
    if installer == "pip":
        monkeypatch.setattr(pip, "uv_binary", lambda: None)
    program = Path(pip.target_install(tmp_path, tmp_path, tmp_path)[0]).name
    assert (program == "uv") == (installer == "uv"), program
    requirements = "flask\ngunicorn\n"
    conf = settings(tmp_path, requirements)
    local = tags.local()
    [found] = packages.resolve(conf, requirements, {local: ("web1",)}, local, lambda _: None)
    assert found.prebuilt
    release, venvs = tmp_path / "srv" / "releases" / "r1", tmp_path / "srv" / "venvs"
    release.mkdir(parents=True)
    venvs.mkdir()
    (release / "requirements.txt").write_text(requirements)
    out = run_install(release, venvs, found.archive)
    assert "venv 0123456789abcdef built from the prebuilt packages" in out
    venv = venvs / "0123456789abcdef"
    for script in ("flask", "gunicorn"):
        first = (venv / "bin" / script).read_text().splitlines()[0]
        assert first == f"#!{venv}/bin/python", first
    shown = subprocess.run(
        [str(release / ".venv" / "bin" / "flask"), "--version"],
        capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "Flask" in shown.stdout
    assert (release / "REVISION").read_text() == "revision=abc\n"
    assert not (release / packages.PREBUILT_BIN).exists()
    assert not (venv / "lib" / "bin").exists() and (venv / "bin" / "python").exists()
    with tarfile.open(found.archive) as archive:
        shipped = archive.getnames()
    assert f"{packages.PREBUILT}/flask" in shipped
    assert f"{packages.PREBUILT}/.lock" not in shipped  # uv's own lock file stays behind


def test_upload_build_asks_the_hosts_tags_and_tells_per_tag_set_what_ships(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = settings(tmp_path, "flask\n", "HOSTS=web1,web2,web3\n")

    class Named:  # a host: a key of the fan-out's `GroupResult`
        def __init__(self, name: str) -> None:
            self.name = name

        def close(self) -> None:
            pass

    hosts = [Named(name) for name in ("web1", "web2", "web3")]
    host_tags = {"web1": SERVER_ARM, "web2": SERVER_313, "web3": SERVER_ARM}

    def fake_wheelhouse(settings, requirements, tag_set, local, names, say, builder=None):  # type: ignore[no-untyped-def]
        folder = tmp_path / "wheels" / tag_set.interpreter
        folder.mkdir(parents=True, exist_ok=True)
        name = (
            f"markupsafe-3.0.2-{tag_set.interpreter}-{tag_set.interpreter}-{tag_set.platform}.whl"
        )
        (folder / name).write_bytes(b"zip")
        (folder / "flask-3.1.0-py3-none-any.whl").write_bytes(b"zip")
        return folder

    monkeypatch.setattr(config, "load", lambda c: conf)
    monkeypatch.setattr(session, "session", lambda c: (conf, hosts))
    monkeypatch.setattr(
        facts, "read_facts", lambda host: Facts("Python", "3", "", host_tags[host.name])
    )
    monkeypatch.setattr(packages, "wheelhouse", fake_wheelhouse)
    upload.build_(Context())
    out = capsys.readouterr().out
    assert (
        "packages for cp312-cp312-manylinux_2_36_aarch64 (web1, web3): 2 wheels from the index"
        in out
    )
    assert "packages for cp313-cp313-manylinux_2_41_x86_64 (web2): 2 wheels from the index" in out
    assert "cp312-cp312-manylinux_2_36_aarch64 (web1, web3):\n  package     version" in out
    assert "markupsafe  3.0.2    wheel from the index  cp313-cp313-manylinux_2_41_x86_64" in out
    assert re.search(r"source \S+\.tar\.gz: \d+ KiB to every host", out)


def test_local_shebangs_become_the_wheel_placeholder(tmp_path: Path) -> None:
    python = "/home/me/a very long path/.venv/bin/python"
    plain, long_form, binary = tmp_path / "flask", tmp_path / "celery", tmp_path / "tool"
    plain.write_text("#!/home/me/.venv/bin/python3.11\nimport sys\n")
    long_form.write_text(f"#!/bin/sh\n'''exec' \"{python}\" \"$0\" \"$@\"\n' '''\nimport sys\n")
    binary.write_bytes(b"\x7fELF\x02\x01")
    for script in (plain, long_form, binary):
        packages.placeholder_shebang(script, python)
    assert plain.read_text() == "#!python\nimport sys\n"
    assert long_form.read_text() == "#!python\nimport sys\n"
    assert binary.read_bytes() == b"\x7fELF\x02\x01"


def test_a_dependency_only_the_host_s_python_needs_is_warned_about(tmp_path: Path) -> None:
    """The local tag set's wheelhouse follows this machine's marker values: redis-py needs
    async-timeout on Debian 12's Python 3.11.2, not on a 3.11.7 laptop of the same tags. The
    build names the package and the way out; listed in the requirements, nothing is said."""
    import zipfile

    def wheel(name: str, *requires: str) -> None:
        with zipfile.ZipFile(tmp_path / f"{name}-py3-none-any.whl", "w") as archive:
            lines = "".join(f"Requires-Dist: {r}\n" for r in requires)
            archive.writestr(f"{name}.dist-info/METADATA", f"Name: x\n{lines}\nbody\n")

    wheel("redis-5.0.1", 'async-timeout>=4.0.2; python_full_version <= "3.11.2"', 'hiredis; extra == "hiredis"')  # fmt: skip
    base = TagSet("cp", "3.11", "cp311", ("cp311",), ("manylinux_2_36_x86_64",))
    laptop = replace(base, markers={"python_version": "3.11", "python_full_version": "3.11.7"})
    debian = replace(base, markers={"python_version": "3.11", "python_full_version": "3.11.2"})
    said = packages.marker_drift(tmp_path, laptop, debian, ("web1",))
    assert "Python 3.11.7" in said[0] and "Python 3.11.2 on web1" in said[0], said
    assert said[1:] == [
        'warning:   redis 5.0.1 requires `async-timeout>=4.0.2; python_full_version <= "3.11.2"`: not shipped',
        "warning: list such a package in REQUIREMENTS yourself (docs/upload.md#the-packages)",
    ]  # fmt: skip
    assert packages.marker_drift(tmp_path, laptop, laptop, ("web1",)) == []
    assert packages.marker_drift(tmp_path, laptop, base, ("web1",)) == []  # no marker values
    wheel("async_timeout-4.0.3")
    assert packages.marker_drift(tmp_path, laptop, debian, ("web1",)) == []
