"""A requirement without a wheel for the hosts: built once from its sdist on one host of the
tag set (tasks/scripts/build_wheel.sh, run here by a stand-in host), shipped to the others;
a clear error when that cannot work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks import config
from tasks.build import packages
from tasks.build import tags as build_tags
from tasks.build import wheels as build_wheels
from tasks.core import shell
from tasks.core.paths import VENV_MARKER
from tests.unit.fake_tags import LAPTOP, SERVER_ARM

BASH = shutil.which("bash") or "/bin/bash"

SETUP_PY = """from setuptools import Extension, setup
setup(name="tinyext", version="0.1", ext_modules=[Extension("tinyext", ["tinyext.c"])])
"""
TINYEXT_C = """#include <Python.h>
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "tinyext", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_tinyext(void) { return PyModule_Create(&mod); }
"""


class LocalHost:
    """A `Host` stand-in that is this machine: put/get copy files, scripts run with bash."""

    def __init__(self, root: Path, name: str = "web1", path: str | None = None) -> None:
        (root / "srv" / ".incoming").mkdir(parents=True, exist_ok=True)
        self.settings = SimpleNamespace(
            deploy_root=str(root / "srv"), app_name="shop", python=sys.executable
        )
        self.name = name
        self.path = path
        self.labels: list[str] = []
        self.said: list[str] = []

    def put(self, local: Path, remote_path: str, *, progress: bool = True) -> None:
        shutil.copy(local, remote_path)

    def get(self, remote_path: str, local: Path) -> None:
        shutil.copy(remote_path, local)

    def say(self, text: str) -> None:
        self.said.append(text)

    def script(self, body: str, *, env: dict, label: str = "", **_: object) -> SimpleNamespace:
        self.labels.append(label)
        environ = {**os.environ, **({"PATH": self.path} if self.path else {})}
        done = subprocess.run(
            [BASH, "-c", shell.bash_text(body, env)],
            capture_output=True, text=True, check=False, env=environ,
        )  # fmt: skip
        return SimpleNamespace(
            stdout=done.stdout, stderr=done.stderr, failed=done.returncode != 0,
            exited=done.returncode,
        )  # fmt: skip


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file:// simple index with tinyext's sdist only (no wheel) and setuptools and wheel
    (the build requirements) and their dependencies as wheels."""
    root = tmp_path_factory.mktemp("index")
    source = root / "src" / "tinyext-0.1"
    source.mkdir(parents=True)
    (source / "setup.py").write_text(SETUP_PY)
    (source / "tinyext.c").write_text(TINYEXT_C)
    (source / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=61"]\n')
    simple = root / "simple"
    (simple / "tinyext").mkdir(parents=True)
    shutil.make_archive(
        str(simple / "tinyext" / "tinyext-0.1"), "gztar", root / "src", "tinyext-0.1"
    )
    tools = root / "tools"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
         "setuptools>=61", "wheel", "-d", str(tools)],
        check=True, capture_output=True,
    )  # fmt: skip
    for wheel in tools.glob("*.whl"):
        project = wheel.name.split("-")[0].lower()
        (simple / project).mkdir(exist_ok=True)
        shutil.copy(wheel, simple / project / wheel.name)
    for project in simple.iterdir():  # pip reads a file:// index's index.html pages
        links = "".join(f'<a href="{f.name}">{f.name}</a>' for f in project.iterdir())
        (project / "index.html").write_text(f"<html><body>{links}</body></html>")
    return simple


def settings(tmp_path: Path, index: Path) -> config.Settings:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "requirements.txt").write_text("tinyext\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text(
        f"APP_NAME=shop\nAPP_DIR=app\nPACKAGE_INDEX={index.as_uri()}\n"
    )
    return config.build("staging", tmp_path)


@pytest.mark.skipif(
    not (shutil.which("cc") or shutil.which("gcc"))
    or not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file(),
    reason="building tinyext needs a C compiler and the Python headers here",
)
def test_an_sdist_only_requirement_is_built_once_on_one_host_of_the_tag_set(
    tmp_path: Path, index: Path
) -> None:
    """Deploying 'from a Mac' to two hosts that are this machine: tinyext has no wheel, so
    web1 builds it and web1 and web2 get the same wheelhouse."""
    conf = settings(tmp_path, index)
    here = build_tags.local()
    web1, web2 = LocalHost(tmp_path, "web1"), LocalHost(tmp_path, "web2")
    builder = build_wheels.host_builder([web1, web2], {"web1": here, "web2": here})  # type: ignore[list-item]
    said: list[str] = []
    [found] = packages.resolve(
        conf, "tinyext\n", {here: ("web1", "web2")}, LAPTOP, said.append, builder
    )
    [wheel] = found.wheels
    assert wheel.startswith("tinyext-0.1-cp") and here.accepts(wheel) and not found.prebuilt
    assert found.built == {wheel: "on web1"} and found.hosts == ("web1", "web2")
    assert web1.labels == ["build wheel", "build cleanup"] and web2.labels == []
    assert "0 wheels from the index, 1 built on web1; wheelhouse" in said[-1]
    assert packages.describe(found).splitlines()[2].split()[:4] == ["tinyext", "0.1", "built", "on"]
    assert not list((tmp_path / "srv" / ".incoming").iterdir())  # the build archive is gone
    # the wheel goes to every host of the set, from the cache the next time
    again: list[str] = []
    packages.resolve(conf, "tinyext\n", {here: ("web1", "web2")}, LAPTOP, again.append, builder)
    assert "(cached in" in again[0] and web1.labels == ["build wheel", "build cleanup"]
    cache = packages.wheelhouse(conf, "tinyext\n", here, LAPTOP, (), lambda _: None)
    assert (cache / VENV_MARKER).exists() and packages.origins(cache) == {wheel: "on web1"}


def test_a_host_without_a_compiler_is_named_with_the_ways_out(tmp_path: Path, index: Path) -> None:
    tools = tmp_path / "bin"  # the host's PATH: what the script needs, no cc or gcc
    tools.mkdir()
    for name in ("mktemp", "tar", "gzip", "rm", "tail", "mkdir", "uname", "cat"):
        found = shutil.which(name)
        if found:
            (tools / name).symlink_to(found)
    sdist = next((index / "tinyext").glob("*.tar.gz"))
    deps = tmp_path / "src" / "deps"
    deps.mkdir(parents=True)
    for wheel in index.glob("*/*.whl"):
        shutil.copy(wheel, deps)
    here = build_tags.local()
    host = LocalHost(tmp_path, "web1", path=str(tools))
    with pytest.raises(build_wheels.NoWheel) as info:
        build_wheels.build_on_host(host, here, sdist, deps, ["setuptools>=61", "wheel"])  # type: ignore[arg-type]
    message = str(info.value)
    assert f"no wheel of tinyext-0.1.tar.gz for {here.name} (web1;" in message
    assert "web1 lacks a C compiler (cc or gcc)" in message
    for way_out in ("PACKAGE_INDEX", "build-essential python3-dev", "HOST_PACKAGE_INDEX"):
        assert way_out in message
    assert host.labels == ["build wheel"]  # the script removed its work dir itself
    assert not list((tmp_path / "srv" / ".incoming").iterdir())


def test_without_a_builder_or_an_sdist_the_error_names_package_tags_and_hosts(
    tmp_path: Path, index: Path
) -> None:
    conf = settings(tmp_path, index)
    with pytest.raises(
        build_wheels.NoWheel,
        match=r"no wheel of tinyext for cp312-cp312-manylinux_2_36_aarch64 \(web1, web2;",
    ):
        packages.wheelhouse(conf, "tinyext\n", SERVER_ARM, LAPTOP, ("web1", "web2"), lambda _: None)
    (tmp_path / "app" / "requirements.txt").write_text("nosuchthing-anywhere\n")
    with pytest.raises(build_wheels.NoWheel, match="and no source distribution of it either"):
        packages.wheelhouse(
            conf, "nosuchthing-anywhere\n", SERVER_ARM, LAPTOP, ("web1",), lambda _: None,
            lambda *a: pytest.fail("nothing to build"),
        )  # fmt: skip


def test_build_requirements_come_from_the_sdists_pyproject(tmp_path: Path) -> None:
    source = tmp_path / "pkg-1.0"
    source.mkdir()
    (source / "setup.py").write_text("")
    bare = Path(shutil.make_archive(str(tmp_path / "bare"), "gztar", tmp_path, "pkg-1.0"))
    assert build_wheels.build_requirements(bare) == ["setuptools>=40.8.0", "wheel"]
    (source / "pyproject.toml").write_text('[build-system]\nrequires = ["hatchling>=1.2"]\n')
    hatch = Path(shutil.make_archive(str(tmp_path / "hatch"), "gztar", tmp_path, "pkg-1.0"))
    assert build_wheels.build_requirements(hatch) == ["hatchling>=1.2"]


def offline_settings(tmp_path: Path, requirements: str) -> config.Settings:
    """Settings for ``tmp_path/app`` with ``requirements``, resolved from an empty index (what
    a test builds itself is all there is: nothing is fetched from PyPI)."""
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "requirements.txt").write_text(requirements)
    empty = tmp_path / "empty-index"
    empty.mkdir()
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text(
        f"APP_NAME=shop\nAPP_DIR=app\nPACKAGE_INDEX={empty.as_uri()}\n"
    )
    return config.build("staging", tmp_path)


def test_url_path_and_vcs_requirements_are_built_here_and_pinned(tmp_path: Path) -> None:
    """A path requirement of pure Python is built here and pinned for another tag set; one
    with compiled code is refused for it, naming it (the hosts could not load it)."""
    text = (
        "flask>=2  # the app\n-r more.txt\n--hash=sha256:ab\n./vendor/tinypure\n"
        "git+https://git.example/x.git#egg=x\nshop @ https://files.example/shop-1.tar.gz\n"
        "-e ./lib\ngunicorn ; python_version >= '3.9'\n"
    )
    assert build_wheels.direct_references(text) == [
        "./vendor/tinypure", "git+https://git.example/x.git#egg=x",
        "shop @ https://files.example/shop-1.tar.gz", "-e ./lib",
    ]  # fmt: skip
    app = tmp_path / "app"
    pure = app / "vendor" / "tinypure"
    pure.mkdir(parents=True)
    (pure / "setup.py").write_text(
        'from setuptools import setup\nsetup(name="fabdeploy-test-tinypure", version="0.3",'
        ' py_modules=["fdt_tinypure"])\n'
    )
    (pure / "fdt_tinypure.py").write_text("VALUE = 1\n")
    requirements = "./vendor/tinypure  # vendored\n"
    conf = offline_settings(tmp_path, requirements)
    said: list[str] = []
    wheels = packages.wheelhouse(conf, requirements, SERVER_ARM, LAPTOP, ("web1",), said.append)
    [wheel] = packages.check_wheels(wheels, SERVER_ARM)
    assert wheel.startswith("fabdeploy_test_tinypure-0.3-py3-none-any")
    assert (wheels / packages.PINNED).read_text() == "fabdeploy-test-tinypure==0.3\n"
    assert packages.origins(wheels) == {wheel: "locally, from ./vendor/tinypure"}
    assert packages.requirements_of(conf, wheels) == wheels / packages.PINNED
    assert sorted(p.name for p in pure.iterdir()) == ["fdt_tinypure.py", "setup.py"]  # untouched

    if (
        not (shutil.which("cc") or shutil.which("gcc"))
        or not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file()
    ):
        return  # building the compiled one needs a compiler and the Python headers here
    compiled = app / "vendor" / "tinyext"
    compiled.mkdir()
    (compiled / "setup.py").write_text(SETUP_PY)
    (compiled / "tinyext.c").write_text(TINYEXT_C)
    with pytest.raises(
        build_wheels.NoWheel,
        match=r"no wheel of \./vendor/tinyext for cp312-.*names a URL, path or VCS checkout whose wheel",
    ):
        packages.wheelhouse(conf, "./vendor/tinyext\n", SERVER_ARM, LAPTOP, ("web1",), print)


def test_path_requirements_in_included_files_are_pinned_with_the_includes_inlined(
    tmp_path: Path,
) -> None:
    """A path requirement beside ``-r``/``-c`` includes: the pinned requirements in the
    wheelhouse name no file they could not find there (includes inlined, constraints beside),
    and a path requirement of an included file is pinned too."""
    app = tmp_path / "app"
    for name, version in (("tinypure", "0.3"), ("tinytwo", "0.1")):
        tree = app / "vendor" / name
        tree.mkdir(parents=True)
        (tree / "setup.py").write_text(
            f'from setuptools import setup\nsetup(name="fabdeploy-test-{name}", '
            f'version="{version}", py_modules=["fdt_{name}"])\n'
        )
        (tree / f"fdt_{name}.py").write_text("VALUE = 1\n")
    (app / "reqs").mkdir()
    (app / "reqs" / "more.txt").write_text("-c pins.txt\n./vendor/tinytwo  # from an include\n")
    (app / "reqs" / "pins.txt").write_text("fabdeploy-test-tinypure==0.3\n")
    requirements = "./vendor/tinypure\n-r reqs/more.txt\n"
    conf = offline_settings(tmp_path, requirements)
    wheels = packages.wheelhouse(conf, requirements, SERVER_ARM, LAPTOP, ("web1",), print)
    names = packages.check_wheels(wheels, SERVER_ARM)
    assert [n.split("-")[0] for n in names] == ["fabdeploy_test_tinypure", "fabdeploy_test_tinytwo"]
    assert (wheels / packages.PINNED).read_text() == (
        "-c pinned-constraints.txt\nfabdeploy-test-tinypure==0.3\nfabdeploy-test-tinytwo==0.1\n"
    )
    assert (wheels / packages.PINNED_CONSTRAINTS).read_text() == "fabdeploy-test-tinypure==0.3\n"
    # what a host does with it: pip, no index, from the wheelhouse alone
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels),
         "--target", str(target), "-r", str(wheels / packages.PINNED)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert (target / "fdt_tinytwo.py").is_file() and (target / "fdt_tinypure.py").is_file()


@pytest.mark.skipif(
    not (shutil.which("cc") or shutil.which("gcc"))
    or not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file(),
    reason="building tinyext needs a C compiler and the Python headers here",
)
def test_a_compiled_path_requirement_is_built_again_on_a_host_of_the_tag_set(
    tmp_path: Path,
) -> None:
    """Built here first (to learn its name and version), its wheel fits this machine only:
    its source tree goes to the builder of the hosts' tag set, and the requirement is pinned
    to the wheel the host built."""
    app = tmp_path / "app"
    compiled = app / "vendor" / "tinyext"
    compiled.mkdir(parents=True)
    (compiled / "setup.py").write_text(SETUP_PY)
    (compiled / "tinyext.c").write_text(TINYEXT_C)
    conf = offline_settings(tmp_path, "./vendor/tinyext\n")
    handed: list[tuple[str, list[str], list[str]]] = []

    def builder(tags, sdist: Path, deps: Path, requires: list[str]) -> tuple[Path, str]:  # type: ignore[no-untyped-def]
        import tarfile

        with tarfile.open(sdist) as tar:
            handed.append((sdist.name, sorted(tar.getnames()), requires))
        wheel = tmp_path / "tinyext-0.1-cp312-cp312-manylinux_2_17_aarch64.whl"
        with zipfile.ZipFile(wheel, "w") as archive:  # what the host's build would return
            info = "tinyext-0.1.dist-info"
            archive.writestr(
                f"{info}/METADATA", "Metadata-Version: 2.1\nName: tinyext\nVersion: 0.1\n"
            )
            archive.writestr(
                f"{info}/WHEEL",
                "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp312-cp312-manylinux_2_17_aarch64\n",
            )
            archive.writestr(f"{info}/RECORD", "")
        return wheel, "on web1"

    wheels = packages.wheelhouse(
        conf, "./vendor/tinyext\n", SERVER_ARM, LAPTOP, ("web1", "web2"), print, builder
    )
    assert handed == [
        (
            "tinyext-0.1.tar.gz",
            ["tinyext", "tinyext/setup.py", "tinyext/tinyext.c"],
            ["setuptools>=40.8.0", "wheel"],
        )
    ]
    assert packages.check_wheels(wheels, SERVER_ARM) == [
        "tinyext-0.1-cp312-cp312-manylinux_2_17_aarch64.whl"
    ]
    assert (wheels / packages.PINNED).read_text() == "tinyext==0.1\n"
    assert packages.origins(wheels) == {
        "tinyext-0.1-cp312-cp312-manylinux_2_17_aarch64.whl": "on web1"
    }
