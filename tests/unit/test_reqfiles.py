"""tasks/build/reqfiles.py: the requirements file's ``-r``/``-c`` includes, followed as pip does,
and what they change: the wheelhouse cache key and the venv's key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks import config
from tasks.build import archive, packages, preflight, reqfiles
from tasks.core.errors import FabdeployError, detail
from tasks.steps import checks
from tests.unit.fake_tags import SERVER_313, SERVER_ARM


def app(tmp_path: Path, files: dict[str, str], extra: str = "") -> config.Settings:
    for name, text in files.items():
        path = tmp_path / "app" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\nAPP_DIR=app\n" + extra)
    return config.build("staging", tmp_path)


def test_includes_in_every_spelling_pip_reads() -> None:
    text = (
        "flask  # -r not.txt\n"
        "-r base.txt\n"
        "-rshort.txt\n"
        "--requirement=long.txt\n"
        "--requirement  spaced.txt\n"
        "-c constraints.txt\n"
        "--constraint=c2.txt\n"
        "# -r commented.txt\n"
        "--requirementx=no.txt\n"
        "-e ./pkg\n"
        "-r \\\n"
        "   continued.txt\n"
    )
    found = [(i.line, i.option, i.target) for i in reqfiles.includes(text)]
    assert found == [
        (2, "-r", "base.txt"),
        (3, "-r", "short.txt"),
        (4, "--requirement", "long.txt"),
        (5, "--requirement", "spaced.txt"),
        (6, "-c", "constraints.txt"),
        (7, "--constraint", "c2.txt"),
        (11, "-r", "continued.txt"),
    ]


def test_environment_variables_are_expanded_as_pip_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQ_DIR", "reqs")
    assert [i.target for i in reqfiles.includes("-r ${REQ_DIR}/base.txt\n")] == ["reqs/base.txt"]


def test_the_walk_follows_includes_relative_to_the_including_file(tmp_path: Path) -> None:
    settings = app(
        tmp_path,
        {
            "requirements.txt": "-r requirements/prod.txt\n-c constraints.txt\ngunicorn\n",
            "requirements/prod.txt": "-r base.txt\nflask\n",
            "requirements/base.txt": "-c ../constraints.txt\nsix\n",
            "constraints.txt": "six==1.17.0\n",
            "unrelated.txt": "django\n",
        },
    )
    found = reqfiles.read(settings)
    assert [path for path, _ in found.files] == [
        "requirements.txt",
        "requirements/prod.txt",
        "requirements/base.txt",
        "constraints.txt",  # included twice (no cycle): read once
    ]
    assert found.included == ("requirements/prod.txt", "requirements/base.txt", "constraints.txt")
    assert "six==1.17.0" in found.identity
    assert preflight.requirements(settings).files == found.files
    [finding] = [f for f in checks.local(settings) if f.check == "requirements"]
    assert finding.ok
    assert finding.detail.endswith(
        "(including requirements/prod.txt, requirements/base.txt, constraints.txt)"
    )


def test_a_missing_include_names_the_file_and_line(tmp_path: Path) -> None:
    settings = app(
        tmp_path, {"requirements.txt": "gunicorn\n-r base.txt\n", "base.txt": "-r nope.txt\n"}
    )
    with pytest.raises(FabdeployError) as caught:
        preflight.requirements(settings)
    base = settings.app_dir / "base.txt"
    assert detail(caught.value) == (
        f"{base}:1: `-r nope.txt`: {settings.app_dir / 'nope.txt'} does not exist"
    )
    [finding] = [f for f in checks.local(settings) if f.check == "requirements"]
    assert not finding.ok and "`-r nope.txt`" in finding.detail
    with pytest.raises(FabdeployError, match="does not exist"):  # before any pip runs
        archive.build(settings, say=lambda _: None)


def test_an_include_outside_app_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "shared.txt").write_text("six\n")
    settings = app(tmp_path, {"requirements.txt": "--requirement ../shared.txt\n"})
    with pytest.raises(FabdeployError, match=r"requirements\.txt:1: `--requirement \.\./shared\.txt`: .* is outside APP_DIR"):  # fmt: skip
        reqfiles.read(settings)


def test_a_cycle_is_an_error_not_a_recursion(tmp_path: Path) -> None:
    settings = app(
        tmp_path,
        {"requirements.txt": "-r a.txt\n", "a.txt": "six\n-r b.txt\n", "b.txt": "-c a.txt\n"},
    )
    with pytest.raises(FabdeployError) as caught:
        reqfiles.read(settings)
    message = detail(caught.value)
    assert message.startswith(f"{settings.app_dir / 'b.txt'}:1: `-c a.txt`: ")
    assert "cycle (a.txt -> b.txt -> a.txt)" in message
    itself = app(tmp_path / "self", {"requirements.txt": "-r ./requirements.txt\n"})
    with pytest.raises(FabdeployError, match=r"requirements\.txt -> requirements\.txt"):
        reqfiles.read(itself)


def test_an_include_by_url_is_left_to_pip(tmp_path: Path) -> None:
    settings = app(tmp_path, {"requirements.txt": "-r https://example.com/reqs.txt\nsix\n"})
    assert reqfiles.read(settings).included == ()


def test_the_wheelhouse_cache_key_follows_the_included_files(tmp_path: Path) -> None:
    settings = app(tmp_path, {"requirements.txt": "-r base.txt\n", "base.txt": "six==1.16.0\n"})
    top = "-r base.txt\n"
    before = packages.cache_key(settings, top, SERVER_ARM)
    assert packages.cache_key(settings, top, SERVER_ARM) == before
    (settings.app_dir / "base.txt").write_text("six==1.17.0\n")
    assert packages.cache_key(settings, top, SERVER_ARM) != before
    assert packages.cache_key(settings, top, SERVER_313) != packages.cache_key(
        settings, top, SERVER_ARM
    )


def built(tmp_path: Path, wheels: tuple[str, ...], files: str = "") -> archive.Build:
    found = packages.Packages(
        SERVER_ARM, ("web1",), tmp_path, tmp_path / "p.tar.gz", "0" * 64, False, wheels
    )
    return archive.Build(
        "R1", "abc", tmp_path / "a.tar.gz", "0" * 64, "-r base.txt\n", "me@here", tmp_path,
        (found,) if wheels else (), files,
    )  # fmt: skip


def test_the_venv_key_is_the_resolved_wheels(tmp_path: Path) -> None:
    """A version changed anywhere (an included file, the index) makes a new venv; the same
    wheels, whatever the requirements' text, reuse it."""
    python = "Python 3.12.1 linux"
    first = built(tmp_path, ("flask-3.1.0-py3-none-any.whl", "six-1.16.0-py2.py3-none-any.whl"))
    key = archive.venv_digest(archive.venv_contents(first, SERVER_ARM), python, SERVER_ARM)
    same = built(tmp_path, ("six-1.16.0-py2.py3-none-any.whl", "flask-3.1.0-py3-none-any.whl"))
    assert archive.venv_digest(archive.venv_contents(same, SERVER_ARM), python, SERVER_ARM) == key
    newer = built(tmp_path, ("flask-3.1.0-py3-none-any.whl", "six-1.17.0-py2.py3-none-any.whl"))
    assert archive.venv_digest(archive.venv_contents(newer, SERVER_ARM), python, SERVER_ARM) != key
    # each host resolving from HOST_PACKAGE_INDEX: the requirements and the files they include
    a = built(tmp_path, (), "requirements.txt\n-r base.txt\n\0base.txt\nsix==1.16.0\n")
    b = built(tmp_path, (), "requirements.txt\n-r base.txt\n\0base.txt\nsix==1.17.0\n")
    assert archive.venv_contents(a, SERVER_ARM) != archive.venv_contents(b, SERVER_ARM)
