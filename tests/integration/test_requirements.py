"""The app's requirements on real-systemd hosts: a version changed only in a file that
requirements.txt includes (``-r``) reaches the host's venv, the same resolved set keeps
reusing it, and a missing include stops the deploy before the host changes (Debian 12); the
app's Python requirement (``requires-python`` of its pyproject.toml) is checked against each
host's Python: ``>=3.12`` fails on Debian 12 (Python 3.11) with one line, in check, plan,
setup and deploy, and passes on Debian 13 (Python 3.13), where the uv example
(examples/uvapp: uv.lock, gunicorn not listed) then deploys from a clean clone and a stale lock
is refused.

The requirement that changes, ``tinyver``, is two hand-made pure wheels (1.0 and 2.0) in a
private ``file://`` index (PACKAGE_INDEX): the hosts reach no index.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

from tasks.build import workers
from tests.conftest import HostFactory, fab_env
from tests.hostkit import HostKit, TestHost
from tests.hosts import pyindex
from tests.integration.apps import write_app

FAB = str(Path(sys.executable).with_name("fab"))
UVAPP = Path(__file__).resolve().parents[2] / "examples" / "uvapp"
ROOT = "/srv/hello"
TINYVER = 'python -c "import tinyver; print(\\"tinyver\\", tinyver.VERSION)"'


def tiny_wheel(folder: Path, version: str) -> Path:
    """A pure wheel of ``tinyver`` ``version`` (its module says its version)."""
    path = folder / f"tinyver-{version}-py3-none-any.whl"
    info = f"tinyver-{version}.dist-info"
    files = {
        "tinyver/__init__.py": f'VERSION = "{version}"\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: tinyver\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in {**files, f"{info}/RECORD": record}.items():
            archive.writestr(name, text)
    return path


class Project:
    """A project deploying the example app to ``hosts`` from a plain directory."""

    def __init__(self, root: Path, kit: HostKit, hosts: list[TestHost], extra: str = "") -> None:
        self.root, self.hosts = root, hosts
        (root / "config").mkdir(parents=True)
        (root / "fabfile.py").write_text("from tasks import ns\n")
        self.env_file = root / "config" / "staging.env"
        self.env_file.write_text(
            "HOSTS=" + ",".join(f"{h.user}@{h.address}" for h in hosts) + "\n"
            f"SSH_KEY={kit.client_key}\nKNOWN_HOSTS={kit.known_hosts}\n"
            "APP_NAME=hello\nAPP_DIR=app\nBIND=0.0.0.0:8000\nSECRETS_FILE=app/secrets.env\n"
            "WORKERS=1\nHEALTH_TIMEOUT=10\nTEST_COMMAND=\nSWITCH_BATCH=100%\n" + extra
        )
        self.env = fab_env(shared_cache=False)  # it tests what is cached when

    def app(self, version: str, requirements: tuple[str, ...] = ()) -> Path:
        dest = write_app(self.root / "app", version, requirements=requirements)
        (dest / "secrets.env").write_text("GREETING=hi\n")
        return dest

    def fab(self, *args: str, ok: bool = True) -> str:
        proc = subprocess.run(
            [FAB, "staging", *args], cwd=self.root, env=self.env, capture_output=True,
            text=True, timeout=600, check=False,
        )  # fmt: skip
        output = proc.stdout + proc.stderr
        print(f"$ fab staging {' '.join(args)}\n{output[-5000:]}")
        assert (proc.returncode == 0) == ok, f"fab {args} exited {proc.returncode}:\n{output}"
        return output

    def current(self, host: TestHost) -> str:
        link = host.path(f"{ROOT}/current")
        return os.readlink(link).rpartition("/")[2] if link.is_symlink() else ""

    def venv(self, host: TestHost) -> str:
        release = host.path(f"{ROOT}/releases/{self.current(host)}/.venv")
        return os.readlink(release).rpartition("/")[2]


def test_a_version_changed_only_in_an_included_file_reaches_the_host(
    make_hosts: HostFactory, tmp_path: Path
) -> None:
    (host,) = make_hosts(1, release="bookworm")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    index = pyindex.build(
        tmp_path / "index", [], (), [tiny_wheel(wheels, "1.0"), tiny_wheel(wheels, "2.0")]
    )
    project = Project(
        tmp_path / "project", make_hosts.kit, [host], f"PACKAGE_INDEX={index.as_uri()}\n"
    )
    app = project.app("1.0.0", requirements=("-r requirements/base.txt",))
    (app / "requirements").mkdir()
    base = app / "requirements" / "base.txt"
    base.write_text("-c ../constraints.txt\ntinyver\n")
    (app / "constraints.txt").write_text("tinyver==1.0\n")
    project.fab("setup")
    project.fab("deploy")
    assert "tinyver 1.0" in project.fab("exec", TINYVER)
    first = project.venv(host)

    # the version changes only in the constraints file, included by an included file
    (app / "constraints.txt").write_text("tinyver==2.0\n")
    out = project.fab("deploy")
    assert "(cached in" not in out  # the wheelhouse was resolved again
    assert not re.search(r"venv [0-9a-f]{16} reused", out), out
    assert re.search(r"venv [0-9a-f]{16} built", out), out
    assert "tinyver 2.0" in project.fab("exec", TINYVER)
    second = project.venv(host)
    assert second != first

    # the same resolved set, however written: the venv is reused, nothing is built
    base.write_text("# the same packages\n-c ../constraints.txt\ntinyver>=1\n")
    out = project.fab("deploy")
    assert f"venv {second} reused" in out, out
    assert "packages not shipped: the host has this release's venv" in out
    assert project.venv(host) == second
    again = project.fab("deploy", "--force")
    assert "(cached in" in again and f"venv {second} reused" in again

    # a missing include: one line naming the file and line, before the host changes
    serving = project.current(host)
    releases = sorted(p.name for p in host.path(f"{ROOT}/releases").iterdir())
    base.write_text("-c ../constraints.txt\ntinyver\n-r extra.txt\n")
    out = project.fab("deploy", ok=False)
    assert f"{base}:3: `-r extra.txt`: {app / 'requirements' / 'extra.txt'} does not exist" in out
    check = project.fab("check", ok=False)
    assert "BLOCKS  requirements: " in check and "`-r extra.txt`" in check
    assert project.current(host) == serving
    assert sorted(p.name for p in host.path(f"{ROOT}/releases").iterdir()) == releases


REQUIRES_312 = '[project]\nname = "hello"\nversion = "1"\nrequires-python = ">=3.12"\n'
SOURCE = '">=3.12" (requires-python in app/pyproject.toml)'


def refused(host: TestHost) -> str:
    """The one line a host whose Python is too old is refused with."""
    return (
        f"[{host.address}] PYTHON python3 is Python {host.python.split()[-1]}, which does not "
        f"satisfy the app's Python requirement {SOURCE}: install a Python that does on the "
        "host and set PYTHON to it (PYTHON=python3 now), or change the requirement"
    )


def test_python_312_is_refused_on_debian_12_in_check_plan_deploy_and_setup(
    make_hosts: HostFactory, tmp_path: Path
) -> None:
    (host,) = make_hosts(1, release="bookworm")
    project = Project(tmp_path / "project", make_hosts.kit, [host])
    app = project.app("1.0.0")
    project.fab("setup")
    (app / "pyproject.toml").write_text(REQUIRES_312)
    line = refused(host)

    check = project.fab("check", ok=False)
    assert line.replace(f"[{host.address}] ", f"[{host.address}] BLOCKS  python: ") in check
    assert "block a deploy: [" + host.address + "] python" in check
    assert line in project.fab("plan", ok=False)
    deploy = project.fab("deploy", ok=False)
    assert line in deploy and "-> build" not in deploy  # stopped in the check step
    assert list(host.path(f"{ROOT}/releases").iterdir()) == []  # nothing shipped
    assert not host.path(f"{ROOT}/current").exists()
    setup = project.fab("setup", ok=False)
    assert line in setup and "packages (python3, venv): no change" in setup
    assert "directories:" not in setup  # stopped after the packages

    # PYTHON_REQUIRES wins over pyproject.toml; the local test step's Python is checked too
    with project.env_file.open("a") as handle:
        handle.write("PYTHON_REQUIRES=>=3.11,<3.12\n")
    project.fab("check")
    text = project.env_file.read_text().replace("TEST_COMMAND=\n", "TEST_COMMAND=true\n")
    project.env_file.write_text(
        text.replace("PYTHON_REQUIRES=>=3.11,<3.12", "PYTHON_REQUIRES=<3.11")
    )
    local = project.fab("check", ok=False)
    assert (
        "BLOCKS  python requirement: the local Python that runs the test step is Python " in local
    )
    assert '"<3.11" (PYTHON_REQUIRES in ' in local


def test_python_312_passes_on_debian_13_then_a_uv_project_deploys_from_a_clean_checkout(
    make_hosts: HostFactory, tmp_path: Path
) -> None:
    (host,) = make_hosts(1, release="trixie")
    project = Project(tmp_path / "project", make_hosts.kit, [host])
    app = project.app("1.0.0")
    (app / "pyproject.toml").write_text(REQUIRES_312)
    project.fab("setup")
    check = project.fab("check")
    assert "ok      python: Python 3.13" in check and f"satisfies {SOURCE}" in check
    project.fab("deploy")
    assert project.current(host)
    deploy_the_uv_example(project, host, tmp_path)


def git(folder: Path, *args: str) -> str:
    """Run git in ``folder`` (as a test user); its output."""
    argv = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.com", *args]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def deploy_the_uv_example(project: Project, host: TestHost, tmp_path: Path) -> None:
    """examples/uvapp (pyproject.toml and uv.lock, gunicorn not listed) deployed from a fresh
    clone of a repository, replacing the app on the host: it serves under the documented
    gunicorn; a lock behind its pyproject.toml is refused before the host changes."""
    origin = tmp_path / "origin"
    shutil.copytree(project.root, origin, ignore=shutil.ignore_patterns(".fabdeploy", "app"))
    shutil.copytree(UVAPP, origin / "app", ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    (origin / ".gitignore").write_text(".fabdeploy/\n")
    git(origin, "init", "-q")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "the uv example")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
    project.root = clone
    assert not (clone / "app" / "requirements.txt").exists()
    out = project.fab("deploy")
    assert f"packages from uv.lock; fabdeploy adds gunicorn=={workers.GUNICORN[1]}," in out
    with urllib.request.urlopen(host.url(8000, "/"), timeout=10) as answer:
        served = json.load(answer)
    assert served["app"] == "hello-uv" and served["server"] == "gunicorn/" + workers.GUNICORN[1]
    venv = host.path(f"{ROOT}/releases/{project.current(host)}/.venv")
    found = sorted(p.name for p in venv.glob("lib/python3*/site-packages/*.dist-info"))
    assert f"gunicorn-{workers.GUNICORN[1]}.dist-info" in found and "flask-3.1.3.dist-info" in found
    assert not any(name.startswith("pytest") for name in found)  # the dev group stays out

    serving, releases = project.current(host), sorted(host.path(f"{ROOT}/releases").iterdir())
    pyproject = clone / "app" / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"flask>=3.0"', '"flask>=3.0", "six"'))
    git(clone, "commit", "-q", "-am", "six, not locked")
    out = project.fab("deploy", ok=False)
    assert f"{clone / 'app' / 'uv.lock'} is out of date with {pyproject}: run `uv lock`" in out
    assert "-> lock" not in out  # refused before any connection
    assert "BLOCKS  requirements: " in project.fab("check", ok=False)
    assert project.current(host) == serving
    assert sorted(host.path(f"{ROOT}/releases").iterdir()) == releases
