"""`deploy --ref`: a tag, branch or commit is archived from git; the work tree is untouched."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from tasks import config
from tasks.build import archive, gitref, preflight
from tasks.core.errors import FabdeployError
from tests.unit.test_upload import git


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A project whose app is at v1 in the tag, v2 in HEAD and v3 (uncommitted) on disk."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text(
        "APP_NAME=shop\nAPP_DIR=app\nSECRETS_FILE=app/secrets.env\nPACKAGE_INDEX=https://x/simple\n"
    )
    app = tmp_path / "app"
    app.mkdir()
    (app / "requirements.txt").write_text("gunicorn\n")
    (app / "app.py").write_text("VERSION = 1\n")
    (app / "secrets.env").write_text("TOKEN=committed-by-mistake\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "v1")
    git(tmp_path, "tag", "v1.2")
    (app / "app.py").write_text("VERSION = 2\n")
    (app / "new.py").write_text("x = 2\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "v2")
    (app / "app.py").write_text("VERSION = 3\n")  # uncommitted
    (app / "untracked.py").write_text("y = 3\n")
    return tmp_path


def test_a_ref_is_built_from_git_and_the_work_tree_is_untouched(repo: Path) -> None:
    settings = config.build("staging", repo)
    before = (status(repo), git(repo, "rev-parse", "HEAD"))
    exported = gitref.export(settings, "v1.2")
    try:
        assert exported.revision == git(repo, "rev-parse", "--short=12", "v1.2")
        assert exported.app_dir != settings.app_dir and not (exported.app_dir / "new.py").exists()
        assert not (exported.app_dir / "secrets.env").exists()  # never shipped
        preflight.local(exported)  # the work tree's uncommitted change does not matter
        built = archive.build(exported, say=lambda text: None)
        try:
            assert built.revision == exported.revision
            with tarfile.open(built.archive) as tar:
                names = sorted(tar.getnames())
                assert names == ["app.py", "requirements.txt"]
                assert tar.extractfile("app.py").read() == b"VERSION = 1\n"  # type: ignore[union-attr]
        finally:
            built.cleanup()
    finally:
        gitref.remove(exported)
    assert not exported.app_dir.exists()
    assert (status(repo), git(repo, "rev-parse", "HEAD")) == before
    assert (repo / "app" / "app.py").read_text() == "VERSION = 3\n"
    with pytest.raises(FabdeployError, match="uncommitted changes"):
        preflight.local(settings)  # without --ref the work tree is what counts


def status(repo: Path) -> str:
    """``git status --porcelain`` but fabdeploy's own cache dir (.fabdeploy/, never shipped)."""
    lines = git(repo, "status", "--porcelain").splitlines()
    return "\n".join(line for line in lines if line != "?? .fabdeploy/")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("v9", r"--ref v9: no such tag, branch or commit in "),
        ("--output=/tmp/x", r"not a tag, branch or commit"),
    ],
)
def test_a_bad_ref_is_named(repo: Path, ref: str, message: str) -> None:
    with pytest.raises(FabdeployError, match=message):
        gitref.export(config.build("staging", repo), ref)


def test_a_ref_without_app_dir_is_named(repo: Path) -> None:
    tree = subprocess.run(
        ["git", "-C", str(repo), "mktree"], input="", capture_output=True, text=True, check=True
    ).stdout.strip()
    git(repo, "tag", "empty", git(repo, "commit-tree", tree, "-m", "no app"))
    with pytest.raises(FabdeployError, match=r"--ref empty: commit \w+ has no app/ \(APP_DIR\)"):
        gitref.export(config.build("staging", repo), "empty")


def test_outside_git_a_ref_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\n")
    with pytest.raises(FabdeployError, match="is not in a git work tree"):
        gitref.export(config.build("staging", tmp_path), "v1")
