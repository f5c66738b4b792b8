"""Packages built for the servers, not for the deploying machine, on real hosts of two
Pythons: a fleet of two Debian 13 hosts (CPython 3.13) and one Debian 12 host (CPython 3.11,
the local Python's X.Y) deploys the example app with a compiled requirement (pydantic-core)
and one that only has an sdist (tinypure, made here), resolved from a private index on this
machine (PACKAGE_INDEX=file://...), and a vendored path requirement (./vendor/tinylocal),
built here and pinned in every wheelhouse. The hosts reach no index: each tag set gets its own
wheelhouse, the sdist is built once on one Debian 13 host and shipped to the other, and every
console script of the requirements runs from the host's .venv/bin."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import fab_env, missing_for_netns, require_release, stop_kit, systemd_kit
from tests.hostkit import TestHost
from tests.hosts import pyindex
from tests.integration.apps import write_app
from tests.integration.test_deploy import Site, write_project

REPO = Path(__file__).resolve().parents[2]
ROOT = "/srv/hello"
TINYPURE = {
    "setup.py": 'from setuptools import setup\nsetup(name="tinypure", version="0.1", py_modules=["tinypure"])\n',
    "tinypure.py": 'VALUE = "built from an sdist"\n',
    "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n',
}
WANTED = ["flask", "gunicorn", "pydantic-core", "setuptools>=61", "wheel"]


def simple_index(root: Path) -> Path:
    """A file:// index: WANTED for CPython 3.11 and 3.13, and tinypure's sdist only."""
    source = root / "src" / "tinypure-0.1"
    source.mkdir(parents=True)
    for name, text in TINYPURE.items():
        (source / name).write_text(text)
    sdist = shutil.make_archive(str(root / "tinypure-0.1"), "gztar", root / "src", "tinypure-0.1")
    return pyindex.build(root / "index", WANTED, ("3.11", "3.13"), [Path(sdist)])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, list[TestHost]]]:
    missing = missing_for_netns()
    if missing:
        pytest.skip(f"[hostkit] deploying needs root and network namespaces; missing: {missing}")
    require_release("bookworm")  # the third host
    kit = systemd_kit(tmp_path_factory.mktemp("packages-hosts"), "trixie")
    try:
        hosts = [*kit.start(2), *kit.start(1, release="bookworm")]
        index = simple_index(tmp_path_factory.mktemp("index"))
        project = tmp_path_factory.mktemp("packages-project")
        write_project(project, hosts[0], kit)
        env_file = project / "config" / "staging.env"
        text = env_file.read_text().replace(
            env_file.read_text().splitlines()[0],
            "HOSTS=" + ",".join(f"deploy@{h.address}" for h in hosts),
        )
        env_file.write_text(
            text + f"PACKAGE_INDEX={index.as_uri()}\nTEST_COMMAND=\nSWITCH_BATCH=100%\n"
        )
        env = fab_env()
        site = Site(hosts[0], project, env, kit)
        write_app(
            project / "app",
            "1.0.0",
            requirements=("pydantic-core", "tinypure", "./vendor/tinylocal"),
            uses="pydantic_core",
        )
        vendored = project / "app" / "vendor" / "tinylocal"  # a path requirement, pure Python
        vendored.mkdir(parents=True)
        (vendored / "setup.py").write_text(
            'from setuptools import setup\nsetup(name="tinylocal", version="0.2", py_modules=["tinylocal"])\n'
        )
        (vendored / "tinylocal.py").write_text('VALUE = "vendored"\n')
        (project / "app" / "secrets.env").write_text("GREETING=hi\n")
        yield site, hosts
    finally:
        stop_kit(kit)


def lines_of(output: str, host: TestHost) -> list[str]:
    prefix = f"[{host.address}] "
    return [line[len(prefix) :] for line in output.splitlines() if line.startswith(prefix)]


def test_each_python_gets_packages_built_for_it_and_the_hosts_reach_no_index(
    fleet: tuple[Site, list[TestHost]],
) -> None:
    site, hosts = fleet
    new1, new2, old = hosts
    site.fab("setup")
    deployed = site.fab("deploy")
    out = deployed.stdout
    print(out[-6000:])
    # one wheelhouse per tag set; the sdist built once, on the first Debian 13 host
    assert re.search(rf"1 built on {re.escape(new1.address)}", out), out
    assert new2.address not in " ".join(re.findall(r"built on \S+", out))
    for host in hosts:
        assert site_get(host)["uses"] == "pydantic_core"
    probe = "python -c 'import sys, pydantic_core, tinylocal, tinypure; print(\"py\", sys.version_info[:2], pydantic_core.__version__, tinylocal.VALUE, tinypure.VALUE)'"
    ran = site.fab("exec", probe)
    for host, version in ((new1, "(3, 13)"), (new2, "(3, 13)"), (old, "(3, 11)")):
        [line] = [line for line in lines_of(ran.stdout, host) if line.startswith("py ")]
        assert line.startswith(f"py {version} ") and line.endswith(
            "vendored built from an sdist"
        ), line
    # console scripts, with shebangs naming the host's venv: prebuilt (Debian 12) and pip (13)
    scripts = site.fab(
        "exec",
        ".venv/bin/flask --version && .venv/bin/gunicorn --version && head -n 1 .venv/bin/flask",
    )
    for host in hosts:
        mine = lines_of(scripts.stdout, host)
        assert any(line.startswith("Flask ") for line in mine), mine
        assert any(line.startswith("gunicorn (version") for line in mine), mine
        assert any(re.match(rf"#!{ROOT}/venvs/[0-9a-f]+/bin/python", line) for line in mine), mine
    # the Debian 13 hosts ran pip, offline, from what was shipped
    for host in (new1, new2):
        logs = list(host.path(f"{ROOT}/venvs").glob("*/pip-install.log"))
        assert logs, host.name
        text = logs[0].read_text()
        assert "Looking in indexes" not in text and "Looking in links" in text, text
    assert not list(old.path(f"{ROOT}/venvs").glob("*/pip-install.log"))  # prebuilt, no pip


def site_get(host: TestHost) -> dict[str, str]:
    import json
    import urllib.request

    with urllib.request.urlopen(host.url(8000, "/"), timeout=10) as answer:
        return json.loads(answer.read())
