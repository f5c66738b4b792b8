"""Building a release locally: what goes into the archive, its revision, the venv key."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from tasks import config
from tasks.build import archive, packages, source
from tasks.core.errors import FabdeployError
from tasks.core.records import Revision
from tasks.host import install
from tasks.host.facts import Facts
from tests.unit.fake_tags import SERVER_313, SERVER_ARM, cpython, manylinux

GIT = shutil.which("git")


def project(
    tmp_path: Path, extra: str = "HOST_PACKAGE_INDEX=https://pypi.example/simple\n"
) -> Path:
    app = tmp_path / "app"
    (app / "pkg").mkdir(parents=True)
    (app / "app.py").write_text("app = None\n")
    (app / "pkg" / "__init__.py").write_text("")
    (app / "requirements.txt").write_text("gunicorn\n")
    (app / "secrets.env").write_text("TOKEN=s3cr3t-value\n")
    (app / "__pycache__").mkdir()
    (app / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"x")
    (app / "notes.log").write_text("local only\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text(
        "APP_NAME=shop\nAPP_DIR=app\nSECRETS_FILE=app/secrets.env\n"
        "EXCLUDES=.git,.venv,__pycache__,*.pyc,*.log\n" + extra
    )
    return tmp_path


def members(build: archive.Build) -> set[str]:
    with tarfile.open(build.archive) as tar:
        return {m.name for m in tar.getmembers() if m.isfile()}


def read(build: archive.Build, name: str) -> str:
    with tarfile.open(build.archive) as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read().decode()


def test_excluded_matches_names_and_paths() -> None:
    patterns = (".git", "__pycache__", "*.pyc", "docs/*.md")
    assert source.excluded("a/__pycache__/b.py", patterns)
    assert source.excluded("x.pyc", patterns)
    assert source.excluded(".git", patterns)
    assert source.excluded("docs/readme.md", patterns)
    assert not source.excluded("app.py", patterns)
    assert not source.excluded("gitignore.txt", patterns)


def test_plain_directory_build_honours_excludes_and_never_ships_secrets(tmp_path: Path) -> None:
    settings = config.build("staging", project(tmp_path))
    built = archive.build(settings, say=lambda _: None)
    try:
        assert members(built) == {"app.py", "pkg/__init__.py", "requirements.txt"}
        assert re.fullmatch(r"[0-9a-f]{12}", built.revision)
        assert re.fullmatch(r"\d{8}T\d{6}\.\d{3}Z", built.release)
        assert built.wheelhouse is False  # HOST_PACKAGE_INDEX set: the hosts install from it
        assert built.requirements == "gunicorn\n"
        assert built.archive.name == f"{built.release}.tar.gz"
        assert len(built.sha256) == 64
    finally:
        built.cleanup()
    assert not built.workdir.exists()


#: Secrets files by name: never in a release, wherever they are (docs/upload.md#the-source).
SECRET_NAMES = [
    ".env",
    ".env.local",
    "app/.env.production",
    "config/production.secrets.env",
    "settings/SECRETS.env",
    "deploy/app-secret.env",
    "tools/.env/bin/python",  # a virtualenv named .env
]


def secrets_project(tmp_path: Path) -> Path:
    """APP_DIR the project itself (the default), holding every environment's files: staging's
    secrets and production's (named like any file), and secrets files by name."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text(
        "APP_NAME=shop\nSECRETS_FILE=config/staging.secrets.env\nHOST_PACKAGE_INDEX=https://x/simple\n"
    )
    (tmp_path / "config" / "production.env").write_text(
        "APP_NAME=shop\nSECRETS_FILE=keys/prod-creds.txt\n"
    )
    (tmp_path / "config" / "broken.env").write_text("not a setting\n")
    for name in [
        "config/staging.secrets.env", "keys/prod-creds.txt", *SECRET_NAMES,
        "app.py", "requirements.txt", "config/settings.py", "keys/README", "docs/env.md",
        "environment.env", "secrets.py",
    ]:  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("gunicorn\n" if name == "requirements.txt" else "x\n")
    return tmp_path


def test_no_secrets_file_ships_from_a_plain_directory(tmp_path: Path) -> None:
    settings = config.build("staging", secrets_project(tmp_path))
    built = archive.build(settings, say=lambda _: None)
    try:
        assert members(built) == {
            "app.py", "requirements.txt", "config/settings.py", "keys/README", "docs/env.md",
            "environment.env", "secrets.py",  # not named as secrets files are
            "config/staging.env", "config/production.env", "config/broken.env",
        }  # fmt: skip
    finally:
        built.cleanup()


def test_no_secrets_file_ships_from_git_clean_or_dirty(tmp_path: Path) -> None:
    if GIT is None:
        pytest.skip("git is not installed")
    root = secrets_project(tmp_path)
    untracked = [
        "config/staging.secrets.env", "keys/prod-creds.txt", "config/production.secrets.env",
        ".env.local",
    ]  # fmt: skip
    git(root, "init", "-q")
    git(root, "add", "-A")  # the other secrets files committed by mistake
    git(root, "rm", "-q", "--cached", *untracked)
    git(root, "commit", "-q", "-m", "first")
    settings = config.build("staging", root)
    clean = archive.build(settings, say=lambda _: None)  # untracked secrets are no change
    try:
        assert clean.revision == git(root, "rev-parse", "--short=12", "HEAD")
        shipped = members(clean)
        assert shipped == {
            "app.py", "requirements.txt", "config/settings.py", "keys/README", "docs/env.md",
            "environment.env", "secrets.py", "config/staging.env", "config/production.env",
            "config/broken.env",
        }  # fmt: skip
    finally:
        clean.cleanup()
    (root / "new.py").write_text("x = 1\n")
    with pytest.raises(FabdeployError, match=r"uncommitted changes in \S+: new\.py\."):
        archive.build(settings, say=lambda _: None)
    dirty = archive.build(settings, allow_dirty=True, say=lambda _: None)  # untracked files too
    try:
        assert members(dirty) == shipped | {"new.py"}
    finally:
        dirty.cleanup()


def test_content_revision_follows_the_content(tmp_path: Path) -> None:
    settings = config.build("staging", project(tmp_path))
    files = source.walk(settings.app_dir, settings.excludes)
    first = source.content_revision(settings.app_dir, files)
    assert source.content_revision(settings.app_dir, files) == first
    (settings.app_dir / "notes.log").write_text("excluded: no effect\n")
    assert (
        source.content_revision(settings.app_dir, source.walk(settings.app_dir, settings.excludes))
        == first
    )
    (settings.app_dir / "app.py").write_text("app = 1\n")
    assert source.content_revision(settings.app_dir, files) != first


def test_wheelhouse_goes_into_the_archive(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings = config.build("staging", project(tmp_path, extra=""))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "gunicorn-99-py3-none-any.whl").write_bytes(b"zip")
    seen: dict = {"tags": set()}

    def fake(settings, requirements, tags, local, hosts, say, builder=None):  # type: ignore[no-untyped-def]
        seen.update(requirements=requirements, hosts=seen.get("hosts", ()) + hosts)
        seen["tags"].add(tags)
        return wheels

    monkeypatch.setattr(packages, "wheelhouse", fake)
    targets = {"web1": SERVER_ARM, "web2": SERVER_313, "web3": SERVER_ARM}
    built = archive.build(settings, targets=targets, say=lambda _: None)
    try:
        assert built.packages and built.wheelhouse is True and built.prebuilt is False
        assert not any(m.startswith("wheelhouse/") for m in members(built))  # source only
        arm = built.packages_for(SERVER_ARM)
        assert arm is not None and arm.hosts == ("web1", "web3")
        with tarfile.open(arm.archive) as tar:
            assert tar.getnames() == ["wheelhouse/gunicorn-99-py3-none-any.whl"]
        assert seen == {
            "requirements": "gunicorn\n",
            "tags": {SERVER_ARM, SERVER_313},  # one wheelhouse per distinct tag set
            "hosts": ("web1", "web3", "web2"),
        }
        # packages go only to hosts without this release's venv
        contents = archive.venv_contents(built, SERVER_ARM)
        digest = archive.venv_digest(contents, "Python 3.11.2", SERVER_ARM)
        facts = Facts("Python 3.11.2", "3.12", "", SERVER_ARM, venvs=("0123456789abcdef",))
        assert install.needs_packages(built, facts)
        assert not install.needs_packages(built, replace(facts, venvs=(digest,)))
    finally:
        built.cleanup()


def test_missing_requirements_is_refused(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "app" / "requirements.txt").unlink()
    with pytest.raises(FabdeployError, match=r"has none of uv\.lock .*requirements\.txt"):
        archive.build(config.build("staging", root), say=lambda _: None)


def test_revision_file_round_trips(tmp_path: Path) -> None:
    settings = config.build("staging", project(tmp_path))
    built = archive.build(settings, say=lambda _: None)
    built.cleanup()
    parsed = Revision.parse(built.revision_file("2026-11-24T08:00:00Z"))
    assert len(built.content) == 16
    assert parsed == Revision(
        built.revision, built.release, built.user, "2026-11-24T08:00:00Z", content=built.content
    )


def test_venv_digest_changes_with_requirements_and_python() -> None:
    base = archive.venv_digest("flask\n", "Python 3.11.2 linux-x86_64", SERVER_ARM)
    assert re.fullmatch(r"[0-9a-f]{16}", base)
    assert archive.venv_digest("flask\n", "Python 3.11.2 linux-x86_64", SERVER_ARM) == base
    assert archive.venv_digest("flask\nsix\n", "Python 3.11.2 linux-x86_64", SERVER_ARM) != base
    assert archive.venv_digest("flask\n", "Python 3.12.1 linux-x86_64", SERVER_ARM) != base


def test_venv_digest_changes_with_the_hosts_tags_alone() -> None:
    base = archive.venv_digest("flask\n", "Python 3.12.1 linux", SERVER_ARM)
    assert archive.venv_digest("flask\n", "Python 3.12.1 linux", SERVER_313) != base
    newer_glibc = cpython("3.12", manylinux("aarch64", 39))
    assert archive.venv_digest("flask\n", "Python 3.12.1 linux", newer_glibc) != base
    reordered = replace(SERVER_ARM, platforms=tuple(reversed(SERVER_ARM.platforms)))
    assert archive.venv_digest("flask\n", "Python 3.12.1 linux", reordered) == base


# --- from a git work tree ------------------------------------------------------------------


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(root), *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    if GIT is None:
        pytest.skip("git is not installed")
    root = project(tmp_path)
    (root / ".gitignore").write_text("*.log\n__pycache__/\n.fabdeploy/\n")
    git(root, "init", "-q")
    git(root, "add", "app/app.py", "app/pkg", "app/requirements.txt", "config", ".gitignore")
    git(root, "commit", "-q", "-m", "first")
    (root / "app" / "secrets.env").unlink()  # untracked secrets would count as a change
    (root / "app" / "secrets.env").write_text("TOKEN=s3cr3t-value\n")
    return root


def test_clean_git_tree_ships_git_archive_of_head(repo: Path) -> None:
    (repo / ".gitignore").write_text("*.log\n__pycache__/\n.fabdeploy/\nsecrets.env\n")
    git(repo, "commit", "-q", "-am", "ignore secrets")
    built = archive.build(config.build("staging", repo), say=lambda _: None)
    try:
        assert built.revision == git(repo, "rev-parse", "--short=12", "HEAD")
        assert members(built) == {"app.py", "pkg/__init__.py", "requirements.txt"}
    finally:
        built.cleanup()


def test_dirty_git_tree_is_refused_naming_the_files(repo: Path) -> None:
    (repo / "app" / "app.py").write_text("app = 'changed'\n")
    (repo / "app" / "new.py").write_text("x = 1\n")
    settings = config.build("staging", repo)
    with pytest.raises(FabdeployError) as info:
        archive.build(settings, say=lambda _: None)
    message = str(info.value)
    assert "uncommitted changes" in message and "app.py" in message and "new.py" in message
    assert "secrets.env" not in message  # never shipped, so never "dirty"
    assert "--allow-dirty" in message


def test_untracked_paths_excludes_match_are_no_change(repo: Path) -> None:
    """A project's own untracked `.venv/` (the quickstart's `pip install` into it) is left
    out of the release even with --allow-dirty, so it does not make the tree dirty either."""
    (repo / "app" / ".venv" / "bin").mkdir(parents=True)
    (repo / "app" / ".venv" / "bin" / "python").write_text("")
    (repo / "app" / "cache.pyc").write_bytes(b"")
    built = archive.build(config.build("staging", repo), say=lambda _: None)
    try:
        assert built.revision == git(repo, "rev-parse", "--short=12", "HEAD")
    finally:
        built.cleanup()
    (repo / "app" / "new.py").write_text("x = 1\n")
    with pytest.raises(FabdeployError, match=r"uncommitted changes in \S+: new.py\. Commit"):
        archive.build(config.build("staging", repo), say=lambda _: None)


def test_allow_dirty_ships_the_working_tree_with_a_dirty_revision(repo: Path) -> None:
    (repo / "app" / "app.py").write_text("app = 'changed'\n")
    (repo / "app" / "new.py").write_text("x = 1\n")
    head = git(repo, "rev-parse", "--short=12", "HEAD")
    built = archive.build(config.build("staging", repo), allow_dirty=True, say=lambda _: None)
    try:
        assert built.revision == f"{head}-dirty"
        assert members(built) == {"app.py", "new.py", "pkg/__init__.py", "requirements.txt"}
        assert read(built, "app.py") == "app = 'changed'\n"
    finally:
        built.cleanup()


def test_build_dirs_of_dead_fabs_are_removed(tmp_path: Path) -> None:
    settings = config.build("staging", project(tmp_path))
    stale = tmp_path / ".fabdeploy" / "tmp" / f"build-{2**22 + 4321}-abc"
    stale.mkdir(parents=True)
    built = archive.build(settings, say=lambda _: None)
    try:
        assert not stale.exists()
        assert built.workdir.parent == stale.parent
        assert built.workdir.name.startswith(f"build-{os.getpid()}-")
    finally:
        built.cleanup()
