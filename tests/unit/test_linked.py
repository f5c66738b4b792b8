"""LINKED_DIRS and LINKED_FILES: tasks/scripts/linked_paths.sh run for real on this machine
(as the app user it is, so ``as_app`` runs commands directly), in a temporary deploy root."""

from __future__ import annotations

import getpass
import os
import subprocess
from pathlib import Path

import pytest

from tasks.core import shell


def fakes(tmp_path: Path) -> str:
    """A PATH whose sudo runs the command (-n, -u USER dropped) and whose install drops -o
    and -g unless this is root (who makes the leaves as the app user's, as root does)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    (bin_ / "sudo").write_text(
        '#!/bin/bash\n[ "$1" = -n ] && shift\nif [ "$1" = -u ]; then shift 2; fi\n'
        '[ "$1" = -- ] && shift\nexec "$@"\n'
    )
    (bin_ / "install").write_text(
        '#!/bin/bash\n[ "$(id -u)" = 0 ] && exec /usr/bin/install "$@"\nargs=()\n'
        'while [ $# -gt 0 ]; do\n  case $1 in -o|-g) shift 2;; *) args+=("$1"); shift;; esac\n'
        'done\nexec /usr/bin/install "${args[@]}"\n'
    )
    for tool in ("sudo", "install"):
        (bin_ / tool).chmod(0o755)
    return f"{bin_}:{os.environ['PATH']}"


def linked(tmp_path: Path, dirs: str, files: str, release: str = "") -> subprocess.CompletedProcess[str]:  # fmt: skip
    env = {
        "APP_USER": getpass.getuser(),
        "SHARED": str(tmp_path / "shared"),
        "DIRS": dirs,
        "FILES": files,
        "RELEASE": str(tmp_path / "releases" / release) if release else "",
    }
    script = shell.bash_text(shell.shell("linked_paths"), env)
    return subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": fakes(tmp_path)},
    )


def test_setup_makes_the_shared_paths_not_readable_by_others(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    done = linked(tmp_path, "media\ninstance/uploads", "data/db.sqlite3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "made shared/media/ shared/instance/uploads/ shared/data/db.sqlite3"
    )
    shared = tmp_path / "shared"
    assert oct(os.stat(shared / "media").st_mode & 0o777) == "0o750"
    assert oct(os.stat(shared / "instance" / "uploads").st_mode & 0o777) == "0o750"
    assert oct(os.stat(shared / "data" / "db.sqlite3").st_mode & 0o777) == "0o640"
    # the directories above a nested one are the deploy user's, as shared/ is
    assert oct(os.stat(shared / "instance").st_mode & 0o777) == "0o755"
    again = linked(tmp_path, "media\ninstance/uploads", "data/db.sqlite3")
    assert again.stdout.strip() == "no change"


@pytest.mark.skipif(os.geteuid() != 0, reason="hands a directory to another user: needs root")
def test_a_shared_path_another_user_owns_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "shared" / "media").mkdir(parents=True)
    os.chown(tmp_path / "shared" / "media", 65534, 65534)  # nobody's: never handed over here
    done = linked(tmp_path, "media", "")
    assert done.returncode == 4
    assert "shared/media is owned by nobody:" in done.stderr and "run `fab setup`" in done.stderr
    assert os.stat(tmp_path / "shared" / "media").st_uid == 65534


def test_a_release_gets_links_and_shared_data_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "shared" / "media").mkdir(parents=True)
    (tmp_path / "shared" / "media" / "upload.txt").write_text("kept")
    (tmp_path / "releases" / "R1" / "instance").mkdir(parents=True)
    done = linked(tmp_path, "media", "instance/app.db", "R1")
    assert done.returncode == 0, done.stderr
    release = tmp_path / "releases" / "R1"
    assert os.readlink(release / "media") == str(tmp_path / "shared" / "media")
    assert os.readlink(release / "instance" / "app.db") == str(
        tmp_path / "shared" / "instance" / "app.db"
    )
    assert (release / "media" / "upload.txt").read_text() == "kept"
    subprocess.run(["rm", "-rf", str(release)], check=True)  # what cleanup does to a release
    assert (tmp_path / "shared" / "media" / "upload.txt").read_text() == "kept"


def test_a_release_that_ships_a_linked_path_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "releases" / "R1" / "media").mkdir(parents=True)
    (tmp_path / "releases" / "R1" / "media" / "logo.png").write_text("shipped")
    done = linked(tmp_path, "media", "", "R1")
    assert done.returncode == 4
    assert "the release ships media itself, which LINKED_DIRS keeps in shared/" in done.stderr
    assert (tmp_path / "releases" / "R1" / "media" / "logo.png").read_text() == "shipped"
    assert list((tmp_path / "shared" / "media").iterdir()) == []


def test_a_host_without_the_web_process_only_points_current(tmp_path: Path) -> None:
    (tmp_path / "releases" / "R1").mkdir(parents=True)
    (tmp_path / "releases" / "R2").mkdir()
    os.symlink("releases/R1", tmp_path / "current")
    env = {
        "APP_USER": getpass.getuser(),
        "ROOT": str(tmp_path),
        "CURRENT": str(tmp_path / "current"),
        "TMP_LINK": str(tmp_path / ".current.tmp"),
        "NEW_TARGET": "releases/R2",
    }
    script = shell.bash_text(shell.shell("link_current"), env)
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert os.readlink(tmp_path / "current") == "releases/R2"
    assert "current -> R2 (no web process on this host)" in done.stdout
    env["NEW_TARGET"] = "releases/R9"
    script = shell.bash_text(shell.shell("link_current"), env)
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 3 and "release R9 does not exist" in done.stderr
    assert os.readlink(tmp_path / "current") == "releases/R2"


def test_setup_names_the_linked_paths_it_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second `fab setup` says `no change (media, app.db)`, not `no change (no change)`."""
    from types import SimpleNamespace

    from tasks.host import linked as linked_paths
    from tasks.host import provision

    said: list[str] = []
    settings = SimpleNamespace(linked_dirs=("media",), linked_files=("app.db",))
    host = SimpleNamespace(settings=settings, say=said.append)
    monkeypatch.setattr(linked_paths, "apply", lambda _host: "no change")
    assert not provision.shared_paths(host).changed  # type: ignore[arg-type]
    monkeypatch.setattr(linked_paths, "apply", lambda _host: "made shared/app.db")
    assert provision.shared_paths(host).changed  # type: ignore[arg-type]
    assert said == [
        "linked paths in shared/: no change (media, app.db)",
        "linked paths in shared/: changed (made shared/app.db)",
    ]
