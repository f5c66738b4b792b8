"""The build step (BUILD_COMMAND): run in a clean copy of the release source, its outputs in
the archive even when git ignores them, cached by the inputs' hash, its errors before any
host (docs/upload.md#the-build-step)."""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

from tasks import config
from tasks.build import archive, buildcmd, preflight
from tasks.core.errors import ConfigError, FabdeployError
from tasks.steps.planning import build_line
from tests.unit.test_upload import git

GIT = shutil.which("git")

#: A "bundler": static/app.js from src/*.js, and what the command saw around it.
BUILD_PY = """\
import os, pathlib
out = pathlib.Path("static")
out.mkdir(exist_ok=True)
parts = sorted(pathlib.Path("src").glob("*.js"))
(out / "app.js").write_text("".join(p.read_text() for p in parts))
seen = sorted(str(p) for p in pathlib.Path(".").rglob("*") if p.is_file())
(out / "seen.txt").write_text("\\n".join(seen) + "\\n")
(out / "env.txt").write_text(os.environ["FABDEPLOY_ENVIRONMENT"] + " " + os.environ["FABDEPLOY_APP_NAME"] + " " + os.environ["FABDEPLOY_BUILD_KEY"])
(out / ".env.production").write_text("LEAKED=1\\n")
with open(os.environ["RUNS"], "a") as runs:
    runs.write("ran\\n")
"""


def project(tmp_path: Path, keys: str) -> Path:
    """A project whose app builds static/ (git-ignored) from src/, in a git work tree with a
    tracked static/app.js the build replaces and an ignored local node_modules/."""
    if GIT is None:
        pytest.skip("git is not installed")
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "static").mkdir()
    (app / "app.py").write_text("app = None\n")
    (app / "requirements.txt").write_text("gunicorn\n")
    (app / "build.py").write_text(BUILD_PY)
    (app / "src" / "a.js").write_text("var a = 1;\n")
    (app / "src" / "b.js").write_text("var b = 2;\n")
    (app / "static" / "app.js").write_text("tracked, replaced by the build\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text(
        "APP_NAME=shop\nAPP_DIR=app\nHOST_PACKAGE_INDEX=https://pypi.example/simple\n" + keys
    )
    (tmp_path / ".gitignore").write_text(".fabdeploy/\nnode_modules/\nruns\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "add", "-f", "app/static/app.js")
    (tmp_path / ".gitignore").write_text(".fabdeploy/\nnode_modules/\nstatic/\nruns\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "first")
    (app / "node_modules").mkdir()
    (app / "node_modules" / "leftover.js").write_text("a dirty tree's leftover\n")
    (app / "static" / "local.js").write_text("a local build's, ignored: never shipped\n")
    return tmp_path


KEYS = f"BUILD_COMMAND={sys.executable} build.py\nBUILD_OUTPUTS=static\n"


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the build command appends a line to each time it runs."""
    path = tmp_path / "runs"
    monkeypatch.setenv("RUNS", str(path))
    return path


def contents(built: archive.Build) -> dict[str, str]:
    with tarfile.open(built.archive) as tar:
        return {
            m.name: tar.extractfile(m).read().decode()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def build(root: Path, said: list[str] | None = None) -> dict[str, str]:
    """The archive's files of a build of ``root`` (what it said appended to ``said``)."""
    said = [] if said is None else said
    built = archive.build(config.build("staging", root), say=said.append)
    try:
        assert built.outputs is not None
        return contents(built)
    finally:
        built.cleanup()


def test_outputs_built_in_a_clean_copy_join_the_archive_replacing_tracked_files(
    tmp_path: Path, runs: Path
) -> None:
    root = project(tmp_path, KEYS)
    said: list[str] = []
    files = build(root, said)
    assert files["static/app.js"] == "var a = 1;\nvar b = 2;\n"  # the tracked one replaced
    assert "static/local.js" not in files  # git ignores static/: not from the work tree
    assert ".env.production" not in " ".join(files) and "static/.env.production" not in files
    seen = files["static/seen.txt"].split()  # the copy holds what the archive holds, no more
    assert seen == ["app.py", "build.py", "requirements.txt", "src/a.js", "src/b.js", "static/app.js"]  # fmt: skip
    environment, app_name, key = files["static/env.txt"].split()
    assert (environment, app_name) == ("staging", "shop") and len(key) == 16
    assert files["app.py"] == "app = None\n"
    assert runs.read_text() == "ran\n"
    assert any(line.startswith("build: running BUILD_COMMAND in a clean copy") for line in said)
    assert f"cached as .fabdeploy/build/{key}" in said[-2]  # then `built release ...`
    assert (root / ".fabdeploy" / "build" / key / "static" / "app.js").is_file()
    assert not (root / "app" / "static" / "seen.txt").exists()  # the work tree untouched


def test_unchanged_inputs_reuse_the_outputs_and_a_changed_input_rebuilds(
    tmp_path: Path, runs: Path
) -> None:
    root = project(tmp_path, KEYS + "BUILD_INPUTS=src/*.js,build.py\n")
    first = build(root)
    (root / "app" / "app.py").write_text("app = 'v2'\n")  # not an input
    git(root, "commit", "-q", "-am", "code only")
    said: list[str] = []
    again = build(root, said)
    assert runs.read_text() == "ran\n"  # not run again
    assert again["static/app.js"] == first["static/app.js"] and again["app.py"] == "app = 'v2'\n"
    assert "(BUILD_COMMAND not run)" in said[-2] and "reused from .fabdeploy/build/" in said[-2]
    (root / "app" / "src" / "c.js").write_text("var c = 3;\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "an input")
    third = build(root)
    assert runs.read_text() == "ran\nran\n"
    assert third["static/app.js"].endswith("var c = 3;\n")


def test_the_key_follows_command_outputs_inputs_and_environment(tmp_path: Path) -> None:
    root = project(tmp_path, KEYS)

    def key(extra: str = "", environment: str = "staging") -> str:
        env_file = root / "config" / f"{environment}.env"
        env_file.write_text(
            "APP_NAME=shop\nAPP_DIR=app\nHOST_PACKAGE_INDEX=https://x/simple\n" + KEYS + extra
        )
        settings = config.build(environment, root)
        staged = tmp_path / "staged.tar"
        with tarfile.open(staged, "w") as tar:
            for name in ("app.py", "src/a.js", "static/app.js"):
                tar.add(root / "app" / name, arcname=name)
        return buildcmd.cache_key(settings, staged)

    base = key()
    assert key() == base
    assert key("BUILD_INPUTS=src\n") != base  # app.py is no input any more
    assert key("BUILD_INPUTS=src/\n") == key("BUILD_INPUTS=src/**/*.js\n")
    assert key(environment="production") != base
    (root / "app" / "static" / "app.js").write_text("an output: never an input\n")
    assert key() == base
    (root / "app" / "src" / "a.js").write_text("var a = 11;\n")
    assert key() != base


def test_a_failing_command_stops_the_build_naming_the_key_and_its_last_lines(
    tmp_path: Path,
) -> None:
    root = project(tmp_path, "BUILD_COMMAND=echo compiling; echo 'src/a.js: syntax error' >&2; exit 3\nBUILD_OUTPUTS=static\n")  # fmt: skip
    with pytest.raises(FabdeployError) as info:
        archive.build(config.build("staging", root), say=lambda _: None)
    message = str(info.value)
    assert "staging.env:4: BUILD_COMMAND: `echo compiling;" in message
    assert "failed (exit 3)" in message and message.endswith("compiling\nsrc/a.js: syntax error")
    assert not [p for p in (root / ".fabdeploy" / "build").iterdir() if p.is_dir()]  # no cache
    assert list((root / ".fabdeploy" / "tmp").iterdir()) == []  # the build dir removed


def test_an_output_the_command_did_not_make_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path, "BUILD_COMMAND=mkdir dist\nBUILD_OUTPUTS=dist,static/bundle.js\n")
    with pytest.raises(FabdeployError, match=r"staging.env:5: BUILD_OUTPUTS: `mkdir dist` made no static/bundle.js in the clean copy of the release source \(it printed nothing\)"):  # fmt: skip
        archive.build(config.build("staging", root), say=lambda _: None)


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ("BUILD_COMMAND=make\n", r"staging.env:4: BUILD_COMMAND is set but BUILD_OUTPUTS is empty"),
        ("BUILD_OUTPUTS=static\n", r"staging.env:4: BUILD_OUTPUTS is set but BUILD_COMMAND is empty"),
        ("BUILD_INPUTS=src\n", r"staging.env:4: BUILD_INPUTS is set but BUILD_COMMAND is empty"),
    ],
)  # fmt: skip
def test_build_keys_that_disagree_are_refused_by_preflight(
    tmp_path: Path, keys: str, error: str
) -> None:
    settings = config.build("staging", project(tmp_path, keys))
    with pytest.raises(ConfigError, match=error):
        preflight.local(settings)


def test_an_input_pattern_matching_no_file_is_refused(tmp_path: Path, runs: Path) -> None:
    root = project(tmp_path, KEYS + "BUILD_INPUTS=src,frontnd/*.ts\n")
    with pytest.raises(ConfigError, match=r"staging.env:6: BUILD_INPUTS: 'frontnd/\*.ts' matches no file"):  # fmt: skip
        archive.build(config.build("staging", root), say=lambda _: None)
    assert not runs.exists()


@pytest.mark.parametrize(
    ("raw", "ok"),
    [("static", True), ("static/app.js,dist", True), ("../out", False), ("/abs", False),
     (".venv", False), ("REVISION", False)],
)  # fmt: skip
def test_build_outputs_are_paths_inside_app_dir(tmp_path: Path, raw: str, ok: bool) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text(f"APP_NAME=shop\nBUILD_OUTPUTS={raw}\n")
    if ok:
        assert config.build("staging", tmp_path).build_outputs == tuple(raw.split(","))
    else:
        with pytest.raises(ConfigError, match=r"staging\.env:2: BUILD_OUTPUTS"):
            config.build("staging", tmp_path)


def test_matches_globs_directories_and_double_stars() -> None:
    assert buildcmd.matches("src/a.js", "src")
    assert buildcmd.matches("src/deep/a.js", "src/")
    assert buildcmd.matches("src/a.js", "src/**/*.js")
    assert buildcmd.matches("src/deep/a.js", "src/**/*.js")
    assert buildcmd.matches("package-lock.json", "package*.json")
    assert not buildcmd.matches("srcs/a.js", "src")
    assert not buildcmd.matches("app.py", "*.js")


def test_old_build_caches_are_pruned(tmp_path: Path) -> None:
    root = tmp_path / "build"
    for number in range(8):
        (root / f"key{number}").mkdir(parents=True)
        (root / f"key{number}.log").write_text("")
        stamp = 1_000_000 + number
        os.utime(root / f"key{number}", (stamp, stamp))
    buildcmd.prune(root, "key0")
    kept = sorted(p.name for p in root.iterdir())
    assert kept == ["key0", "key0.log"] + [f"key{n}{s}" for n in range(4, 8) for s in ("", ".log")]


def test_plan_says_whether_the_command_ran_or_the_deploy_reuses_its_outputs() -> None:
    def plan_of(cached: bool) -> str:
        done = buildcmd.Outputs("9b1f0c3e2d4a5f68", cached, 2.34, ("static",), 2, 3072)
        built = archive.Build("r", "c0ffee", Path("r.tar.gz"), "", "", "me@here", Path("w"), outputs=done)  # fmt: skip
        return build_line(built)

    assert plan_of(False) == "build: BUILD_COMMAND ran in 2.3s (key 9b1f0c3e2d4a5f68): static (2 files, 3 KiB), cached for the deploy"  # fmt: skip
    assert plan_of(True) == "build: static (2 files, 3 KiB) cached in .fabdeploy/build/9b1f0c3e2d4a5f68: deploy runs no BUILD_COMMAND"  # fmt: skip
    assert build_line(archive.Build("r", "c", Path("r"), "", "", "", Path("w"))) == ""
