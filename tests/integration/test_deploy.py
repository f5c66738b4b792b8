"""The deploy pipeline against a real server, driven the way a user drives it: `fab staging
setup`, `fab staging deploy`, `fab staging rollback` run as subprocesses from a project dir.

The server boots real systemd (tests/hosts/: systemd-nspawn), once as Debian 12 (systemd 252,
the local Python's X.Y: packages prebuilt locally; APP_USER set to the SSH user, the opt-in
every command warns about) and once as Debian 13 (systemd 257, Python 3.13: a wheelhouse and
pip with --no-index on the host; APP_USER unset: the app runs as a system user of its own named
after APP_NAME, as by default). After every switch the unit must still track the serving master: `systemctl show` gives
MainPID = the master in the pidfile, NRestarts=0, active/running, and the unit's journal has
no Deactivated/Stopped/restart line since the step began.

Every check looks at what the host SERVES (HTTP from outside) and what lies on its disk, not
only at exit codes. One host walks the whole story in order (setup, first deploy, unchanged
redeploy, code change, requirement change, broken releases, rollback, cleanup, locks, a killed
deploy); each step builds on the one before, which keeps the file well under a few minutes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import fabric
import pytest
from invoke import Context

from tasks import config
from tasks.ssh import session
from tests.conftest import fab_env, figure, missing_for_netns, stop_kit, systemd_kit
from tests.hostkit import HostKit, TestHost
from tests.hosts import pyindex
from tests.integration.apps import write_app, write_frontend

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))
APP = "hello"
PORT = 8000
ROOT = f"/srv/{APP}"
KEEP = 3
#: The Debian releases the story runs on, and the APP_USER of each: the SSH user (the opt-in
#: that is warned about), or unset (the default: a user named APP_NAME).
APP_USERS = {"bookworm": "deploy", "trixie": ""}
#: What `fab check`, `plan`, `setup` and the deploy say when the app runs as the SSH user.
AS_SSH_USER = "the app runs as the SSH user deploy, who has sudo: a compromised app is root"
#: Journal lines that mean systemd lost or restarted the service.
UNTRACKED = re.compile(
    r"Deactivated|Stopped|Stopping|Scheduled restart|Main process exited|Failed|Killing"
)
#: Secrets with characters a shell, systemd or an env parser could mangle; never printed.
SECRETS_ENV = (
    "# test secrets\n"
    "GREETING='hello \"friend\"; $(touch /tmp/fabdeploy-pwned) `id` $HOME \\back 42'\n"
    "API_TOKEN=tok-5d1c9e0a7b3f11\n"
)

# --- helpers -------------------------------------------------------------------------------


class RequestLoop:
    """GET a URL every ~20 ms in a thread (at most 60 s); count failures, remember versions
    and how long each answered request took (``latencies``, seconds)."""

    def __init__(self, url: str, limit: float = 60.0, where: str = "") -> None:
        self.url = url
        self.where = where
        self.limit = limit
        self.ok = 0
        self.failures: list[str] = []
        self.versions: list[str] = []
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        end = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < end:
            sent = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=10) as answer:
                    self.versions.append(json.loads(answer.read())["version"])
                    self.latencies.append(time.monotonic() - sent)
                    self.ok += 1
            except Exception as exc:  # every failure counts, whatever its kind
                self.failures.append(repr(exc))
            time.sleep(0.02)

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)
        self._stop.set()
        self._thread.join(timeout=15)

    def report(self, what: str) -> str:
        line = f"{what}: {self.ok} requests, {len(self.failures)} failed"
        print(line, self.failures[:3])
        figure(f"{self.where}: {line}" if self.where else line)  # in the run's summary
        return line


@dataclass
class Site:
    """One test host plus the project dir `fab` runs in, and every output fab printed."""

    host: TestHost
    project: Path
    env: dict[str, str]
    kit: HostKit
    app_user: str = "deploy"
    outputs: list[str] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)

    @property
    def srv(self) -> Path:
        """The host's deploy root, seen from this machine."""
        return self.host.path(ROOT)

    @property
    def same_python(self) -> bool:
        """Whether the host runs the local Python's X.Y (packages are then prebuilt locally)."""
        return self.host.python.split()[-1].rsplit(".", 1)[0] == "{}.{}".format(*sys.version_info)

    def unit(self) -> dict[str, str]:
        """What systemd says of the app's unit: MainPID, NRestarts, ActiveState, SubState."""
        out = self.sh(f"systemctl show -p MainPID,NRestarts,ActiveState,SubState {APP}")
        return dict(line.split("=", 1) for line in out.splitlines())

    def journal(self) -> list[str]:
        """The unit's journal lines (systemd's own, since the app logs to its files)."""
        return self.sh(f"journalctl -u {APP}.service -o cat --no-pager -q || true").splitlines()

    def tracked(self, since: int) -> None:
        """Assert systemd tracks the serving master and lost nothing since journal line ``since``."""
        master = self.master()
        assert running_in(self, master)
        unit = self.unit()
        assert unit == {
            "MainPID": str(master),
            "NRestarts": "0",
            "ActiveState": "active",
            "SubState": "running",
        }, unit
        lost = [line for line in self.journal()[since:] if UNTRACKED.search(line)]
        assert lost == [], lost

    def fab(
        self, *args: str, ok: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        proc = subprocess.run(
            [FAB, "staging", *args],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        proc.seconds = time.monotonic() - started  # type: ignore[attr-defined]
        output = proc.stdout + proc.stderr
        self.outputs.append(output)
        if ok and proc.returncode != 0:
            raise AssertionError(f"fab {' '.join(args)} exited {proc.returncode}:\n{output}")
        if not ok and proc.returncode == 0:
            raise AssertionError(f"fab {' '.join(args)} should have failed:\n{output}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [FAB, "staging", *args],
            cwd=self.project,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def kill_deploy_at(self, marker: str, delay: float = 0.0) -> subprocess.Popen[str]:
        """Start `fab staging deploy --skip-tests`, SIGKILL it ``delay`` s after it prints a
        line with ``marker``; return the dead process (its output is in ``outputs``)."""
        victim = self.popen("deploy", "--skip-tests")
        seen = []
        assert victim.stdout is not None
        for line in victim.stdout:
            seen.append(line)
            if marker in line:
                break
        time.sleep(delay)
        victim.send_signal(signal.SIGKILL)
        rest, _ = victim.communicate(timeout=30)
        self.outputs.append("".join(seen) + rest)
        return victim

    def app(self, version: str, **kw: object) -> None:
        write_app(self.project / "app", version, **kw)  # type: ignore[arg-type]
        (self.project / "app" / "secrets.env").write_text(SECRETS_ENV)

    def get(self, path: str = "/") -> dict[str, str]:
        with urllib.request.urlopen(self.host.url(PORT, path), timeout=10) as answer:
            return json.loads(answer.read())

    def wait_serving(self, timeout: float = 30) -> dict[str, str]:
        """The app's answer once it answers (after a start: Type=forking returns when the
        pidfile is written, a moment before gunicorn listens)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get("/")
            except OSError:
                assert time.monotonic() < deadline, self.sh(f"systemctl status {APP} || true")
                time.sleep(0.2)

    def loop(self) -> RequestLoop:
        where = f"Debian {self.host.release}, {self.host.systemd}" if self.host.release else ""
        return RequestLoop(self.host.url(PORT, "/"), limit=180, where=where)  # a cap, not a goal

    def sh(self, script: str, user: str = "root") -> str:
        return self.host.sh(script, user=user).stdout.strip()

    def git(self, *args: str) -> str:
        """Run git in the project (as a test user) and return what it printed."""
        who = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid"]
        done = subprocess.run(
            ["git", "-C", str(self.project), *who, *args],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout.strip()

    def current(self) -> str:
        return os.readlink(self.srv / "current").rpartition("/")[2]

    def releases(self) -> list[str]:
        return sorted(p.name for p in (self.srv / "releases").iterdir())

    def venvs(self) -> list[str]:
        return sorted(p.name for p in (self.srv / "venvs").iterdir() if not p.name.startswith("."))

    def venv_of(self, release: str) -> str:
        return os.readlink(self.srv / "releases" / release / ".venv").rpartition("/")[2]

    def audit(self) -> list[dict[str, str]]:
        lines = (self.srv / "revisions.log").read_text().splitlines()
        return [dict(part.split("=", 1) for part in line.split("\t")) for line in lines]

    def master(self) -> int:
        """The pid in the pidfile (/run/hello, a tmpfs in the host: read there)."""
        return int(self.sh(f"cat /run/{APP}/gunicorn.pid"))

    def masters(self) -> list[str]:
        """Command lines of every gunicorn master on the host (workers excluded)."""
        out = self.sh(
            "ps -e -o pid=,ppid=,args= | awk '$3 ~ /python/ && /gunicorn/ {print}' || true"
        )
        rows = [line.split(None, 2) for line in out.splitlines()]
        pids = {row[0] for row in rows}
        return [row[2] for row in rows if row[1] not in pids]


def running_in(site: Site, pid: int) -> bool:
    """Whether ``pid`` (as the host numbers it) is a live process there, not a zombie."""
    state = site.sh(f"ps -o stat= -p {pid} || true")
    return state != "" and not state.startswith(("Z", "X"))


def _parsed_secrets() -> dict[str, str]:
    import io

    from dotenv import dotenv_values

    return {k: v or "" for k, v in dotenv_values(stream=io.StringIO(SECRETS_ENV)).items()}


def write_project(project: Path, host: TestHost, kit: HostKit, app_user: str = "") -> None:
    (project / "config").mkdir(parents=True, exist_ok=True)
    (project / "fabfile.py").write_text("from tasks import ns\n")
    (project / "config" / "staging.env").write_text(
        f"HOSTS={host.user}@{host.address}"
        + (f":{host.port}" if host.port not in (0, 22) else "")
        + f"\nSSH_KEY={kit.client_key}\nKNOWN_HOSTS={kit.known_hosts}\n"
        f"APP_NAME={APP}\nAPP_DIR=app\nBIND=0.0.0.0:{PORT}\nSECRETS_FILE=app/secrets.env\n"
        f"WORKERS=2\nHEALTH_TIMEOUT=10\nKEEP_RELEASES={KEEP}\n"
        + (f"APP_USER={app_user}\n" if app_user else "")
    )


@contextlib.contextmanager
def fresh_site(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    release: str = "bookworm",
    app_user: str = "",
) -> Iterator[Site]:
    """A fresh real-systemd host of ``release`` and a project (``write_project``) deploying
    to it, for a module's fixture; the host stops at the end (skipped where none can boot)."""
    missing = missing_for_netns()
    if missing:
        pytest.skip(f"[hostkit] deploying needs root and network namespaces; missing: {missing}")
    kit = systemd_kit(tmp_path_factory.mktemp(f"{name}-hosts"), release)
    try:
        host = kit.start(1)[0]
        project = tmp_path_factory.mktemp(f"{name}-project")
        write_project(project, host, kit, app_user)
        yield Site(host, project, fab_env(shared_cache=False), kit, app_user or APP)
    finally:
        stop_kit(kit)


@pytest.fixture(scope="module", params=sorted(APP_USERS))
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """A fresh real-systemd host of one Debian release (torn down after its story) and a
    project deploying to it."""
    release = request.param
    with fresh_site(tmp_path_factory, f"deploy-{release}", release, APP_USERS[release]) as site:
        site.app("1.0.0")
        host = site.host
        site.numbers["host"] = f"Debian {release}, {host.systemd}, {host.python}"  # type: ignore[assignment]
        yield site
        print("deploy numbers:", json.dumps(site.numbers, indent=1))


def on_one_release(site: Site, why: str) -> None:
    """Skip on Debian 13 what does not depend on the release: the suite's time goes to what
    does (the switch, the journal, systemd's tracking, the venvs)."""
    if site.host.release != "bookworm":
        pytest.skip(f"release-independent ({why}): shown on Debian 12")


# --- the story, in order -------------------------------------------------------------------


def test_setup_then_first_deploy_serves_the_app_as_deploy(site: Site) -> None:
    first = site.fab("setup")
    assert "directories: changed" in first.stdout
    assert f"secrets /etc/{APP}/env: changed (API_TOKEN, GREETING)" in first.stdout
    if site.app_user == site.host.user:  # the opt-in: said, not refused
        assert f"user deploy: no change (WARNING: {AS_SSH_USER}" in first.stdout, first.stdout
    else:
        assert f"user {APP}: changed (the app's own; deploy deploys)" in first.stdout

    second = site.fab("setup")
    items = [line for line in second.stdout.splitlines() if re.match(r"^\[[^]]+\] [^ ].*: ", line)]
    assert len(items) >= 8, second.stdout
    assert all(re.search(r": no change( \(.*\))?$", line) for line in items), second.stdout
    assert "daemon-reload" not in second.stdout

    with pytest.raises(OSError):
        site.get("/")  # nothing serves before the first deploy
    # the test venv (no test requirements: pytest added), made before the request loop starts
    tested = site.fab("test")
    made = re.search(r"test venv (\.fabdeploy/test-venvs/[0-9a-f]{16}): made in", tested.stdout)
    assert made and "pytest is added to the test venv" in tested.stdout, tested.stdout
    journal = len(site.journal())
    for other in ("config/production.secrets.env", ".env.local"):  # a plain directory's
        (site.project / "app" / other).parent.mkdir(exist_ok=True)
        (site.project / "app" / other).write_text("OTHER_TOKEN=not-this-environments\n")
    with site.loop() as loop:
        cold = site.fab("deploy")
    assert (AS_SSH_USER in cold.stderr) == (site.app_user == site.host.user), cold.stderr
    site.numbers["cold deploy seconds"] = round(cold.seconds, 1)  # type: ignore[attr-defined]
    answer = site.get("/")
    assert answer["version"] == "1.0.0"
    assert answer["release"] == site.current()
    assert loop.versions and set(loop.versions) == {"1.0.0"}  # nothing else ever answered
    figure(
        f"{loop.where}: cold deploy: {loop.ok} answers, all 1.0.0; {len(loop.failures)} refused "
        "before the first start (nothing served yet)"
    )
    if site.same_python:  # no pip on the host, packages prebuilt locally
        assert re.search(r"venv [0-9a-f]{16} built from the prebuilt packages", cold.stdout)
    else:  # another Python: the wheelhouse, pip on the host offline
        venv = re.search(r"venv ([0-9a-f]{16}) built with pip", cold.stdout)
        assert venv, cold.stdout
        log = (site.srv / "venvs" / venv.group(1) / "pip-install.log").read_text()
        assert "Looking in indexes" not in log and "Looking in links" in log, log
    assert "2 passed" in cold.stdout  # the local test gate ran
    # in its own venv, after the no-op check
    assert f"test venv {made.group(1)}: reused" in cold.stdout
    assert cold.stdout.index("-> compare") < cold.stdout.index("-> test") < cold.stdout.index("-> upload")  # fmt: skip

    master = site.master()
    users = site.sh(f"ps -o user= -p {master}; ps -o user= --ppid {master}").split()
    assert users == [site.app_user] * 3, users  # master + WORKERS=2, all as the app user
    assert site.sh(f"systemctl is-active {APP}") == "active"
    assert site.sh(f"systemctl is-enabled {APP}") == "enabled"
    site.tracked(journal)

    env_file = site.host.path(f"/etc/{APP}/env")  # root's, the app's group may read it
    group = site.sh(f"id -gn {site.app_user}")
    assert site.sh(f"stat -c '%U %G %a' /etc/{APP}/env") == f"root {group} 640"
    assert env_file.stat().st_mode & 0o777 == 0o640 and env_file.stat().st_uid == 0
    assert not (site.srv / "releases" / site.current() / "secrets.env").exists()  # never shipped
    shipped = site.sh(f"cd {ROOT}/current/ && find . -type f | sort").split()
    assert "./app.py" in shipped and not [f for f in shipped if "secret" in f or ".env" in f]
    greeting = _parsed_secrets()["GREETING"]
    assert site.get("/greeting-sha256")["sha256"] == hashlib.sha256(greeting.encode()).hexdigest()
    assert site.sh("test ! -e /tmp/fabdeploy-pwned && echo clean") == "clean"

    release = site.srv / "releases" / site.current()
    assert os.readlink(release / ".env") == f"/etc/{APP}/env"
    assert not (release / "wheelhouse").exists()
    assert list((site.srv / ".incoming").iterdir()) == []
    assert site.get("/log/printed-by-the-app") == {"logged": "printed-by-the-app"}
    assert "app log: printed-by-the-app" in (site.srv / "shared" / "log" / "error.log").read_text()

    # the app in its sandbox (docs/security.md#what-the-unit-forbids), as the app itself sees it:
    # no sudo (the SSH user's passwordless sudo works outside it), its release read-only, its
    # logs writable, no home directories, no other users' processes
    probe = site.get("/sandbox-probe")
    assert probe == {
        "sudo": 1,
        "release": "Read-only file system",
        "logs": "ok",
        "home": "Permission denied",
        "pid1": False,
    }, probe
    if site.app_user == site.host.user:
        assert site.sh("sudo -n true && echo root", user=site.app_user) == "root"

    refused = site.fab("rollback", ok=False)
    assert "no previous release to roll back to" in refused.stderr


def test_unchanged_redeploy_changes_nothing_and_forced_reuses_the_venv(site: Site) -> None:
    on_one_release(site, "the no-op rule and the venv's key are fabdeploy's, not the host's")
    before, master = site.current(), site.master()
    digest = site.venv_of(before)
    venv = site.srv / "venvs" / digest
    stat_before = (venv.stat().st_ino, venv.stat().st_mtime_ns)
    pip_logs = {p: p.stat().st_mtime_ns for p in venv.glob("**/pip-install.log")}
    venvs_before = site.venvs()

    again = site.fab("deploy")
    site.numbers["unchanged deploy seconds"] = round(again.seconds, 1)  # type: ignore[attr-defined]
    assert "no change: every host already serves revision" in again.stdout
    assert "-> upload" not in again.stdout
    assert "-> test" not in again.stdout and "passed" not in again.stdout  # a no-op runs no tests
    assert (site.current(), site.master()) == (before, master)  # nothing restarted

    # The same files as a git checkout: another revision (a commit), the same content.
    site.git("init", "-q")
    (site.project / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n.fabdeploy/\n")
    site.git("add", "-A")
    site.git("commit", "-qm", "the same app, now in git")
    commit = site.git("rev-parse", "--short=12", "HEAD")
    same = site.fab("deploy")
    assert f"no change: revision {commit} is made of the same files and packages" in same.stdout
    assert (site.current(), site.master()) == (before, master)

    forced = site.fab("deploy", "--force")
    assert f"venv {digest} reused" in forced.stdout
    assert "built" not in forced.stdout.split("-> install")[1].split("-> smoke")[0]
    assert site.current() != before and site.venv_of(site.current()) == digest
    assert (venv.stat().st_ino, venv.stat().st_mtime_ns) == stat_before  # pip never ran
    if site.same_python:  # prebuilt: pip never ran on the host
        assert not pip_logs
    assert {p: p.stat().st_mtime_ns for p in venv.glob("**/pip-install.log")} == pip_logs
    assert site.venvs() == venvs_before
    assert site.get("/")["release"] == site.current()

    # A commit that changes nothing the release ships (a README outside APP_DIR): a no-op
    # that says why; the plan agrees.
    served, master = site.current(), site.master()
    (site.project / "README.md").write_text("How to deploy this app.\n")
    site.git("add", "README.md")
    site.git("commit", "-qm", "docs only")
    docs = site.fab("deploy")
    assert (
        f"no change: revision {site.git('rev-parse', '--short=12', 'HEAD')} is made of the same "
        f"files and packages as revision {commit}, which the hosts serve: nothing it changed "
        "(changed since: README.md) is part of the release"
    ) in docs.stdout, docs.stdout
    assert "-> upload" not in docs.stdout and "passed" not in docs.stdout
    plan = site.fab("plan")
    assert f"no change: serves revision {commit}, made of the same files" in plan.stdout
    assert (site.current(), site.master()) == (served, master)
    version = (site.project / "app" / "VERSION").read_text()
    (site.project / "app" / "VERSION").write_text("1.0.0-docs\n")  # a shipped file: deployed
    site.git("commit", "-qam", "a shipped file")
    assert "no change: serves" not in site.fab("plan").stdout
    shutil.rmtree(site.project / ".git")  # the later tests deploy the plain directory
    (site.project / "app" / "VERSION").write_text(version)


@pytest.mark.parametrize("version", ["1.0.1", "1.0.2", "1.1.0"])
def test_code_change_is_served_with_no_failed_request(site: Site, version: str) -> None:
    """Three code-change redeploys in a row, each with the request loop (on Debian 13 the
    last; the rollback below goes back to it)."""
    if version != "1.1.0":
        on_one_release(site, "a redeploy like the next")
    old_master, journal = site.master(), len(site.journal())
    site.app(version)
    with site.loop() as loop:
        site.fab("deploy")
    site.numbers[f"failed requests, code change {version}"] = len(loop.failures)
    site.numbers[f"requests, code change {version}"] = loop.ok
    loop.report(f"redeploy with a code change to {version}")
    assert loop.failures == [] and loop.ok > 20
    assert loop.versions[-5:] == [version] * 5
    assert site.get("/")["version"] == version
    assert site.get("/")["release"] == site.current()
    # the service is tracked through the handoff: new master in the pidfile, old one gone
    new_master = site.master()
    assert new_master != old_master
    assert site.sh(f"systemctl is-active {APP}") == "active"
    assert site.sh(f"systemctl show -p MainPID {APP}") == f"MainPID={new_master}"
    assert not running_in(site, old_master)
    site.tracked(journal)
    assert len(site.masters()) == 1, site.masters()


def test_requirement_change_gets_a_new_venv_with_no_failed_request(site: Site) -> None:
    old_venv, journal = site.venv_of(site.current()), len(site.journal())
    site.app("1.2.0", requirements=("python-dotenv",), uses="dotenv")
    # the app's tests need a package fab's environment lacks, from an index on this machine
    wheels = site.project / "probe-wheels"
    pyindex.wheel(wheels, "testprobe", "0.1")
    app = site.project / "app"
    (app / "requirements-test.txt").write_text(f"--find-links {wheels}\ntestprobe==0.1\npytest\n")
    (app / "tests" / "test_probe.py").write_text(
        "import sys\n\nimport testprobe\n\n\ndef test_in_the_test_venv() -> None:\n"
        '    assert testprobe.VALUE == "testprobe 0.1"\n'
        '    assert "/.fabdeploy/test-venvs/" in sys.prefix, sys.prefix\n'
    )
    tested = site.fab("test")  # makes the test venv; the deploy below reuses it
    assert (
        "3 passed" in tested.stdout and "requirements.txt + requirements-test.txt" in tested.stdout
    )
    made = re.search(r"test venv (\S+): made in", tested.stdout)
    assert made, tested.stdout
    env_file = site.project / "config" / "staging.env"
    settings = env_file.read_text()
    env_file.write_text(settings + "PREBUILT_PACKAGES=no\n")  # this time pip on the host
    try:
        with site.loop() as loop:
            out = site.fab("deploy")
    finally:
        env_file.write_text(settings)
    site.numbers["failed requests, requirement change"] = len(loop.failures)
    loop.report("redeploy with a changed requirement")
    assert loop.failures == [] and loop.ok > 20
    assert loop.versions[-5:] == ["1.2.0"] * 5
    assert "3 passed" in out.stdout and f"test venv {made.group(1)}: reused" in out.stdout
    new_venv = site.venv_of(site.current())
    assert new_venv != old_venv and f"venv {new_venv} built with pip" in out.stdout
    assert (site.srv / "venvs" / new_venv / "pip-install.log").exists()
    assert site.get("/") == {
        "app": "hello",
        "version": "1.2.0",
        "release": site.current(),
        "uses": "dotenv",
    }
    site.tracked(journal)


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ("import", "No module named 'not_a_module_xyz'"),  # smoke: import with the release's python
        ("health", "health: refusing on purpose"),  # smoke: side port answers 500
        ("switch", "switch failed: health check"),  # healthy on the side port only
    ],
)
def test_broken_release_never_replaces_the_served_one(
    site: Site, broken: str, expected: str
) -> None:
    if broken == "import":
        on_one_release(site, "the smoke check's import fails as its health check does")
    served, releases = site.current(), site.releases()
    master, journal = site.master(), len(site.journal())
    site.app(f"1.3.0-{broken}", requirements=("python-dotenv",), uses="dotenv", broken=broken)
    with site.loop() as loop:
        failed = site.fab("deploy", "--skip-tests", ok=False)
    loop.report(f"broken release ({broken})")
    output = failed.stdout + failed.stderr
    assert expected in output, output
    assert "test: skipped (--skip-tests)" in output
    assert loop.failures == []
    assert site.get("/")["version"] == "1.2.0" and loop.versions[-3:] == ["1.2.0"] * 3
    assert site.current() == served
    assert site.releases() == releases  # the half-made release was removed
    assert site.master() == master
    assert site.audit()[-1]["result"] == "failed"
    if broken == "switch":
        assert "rolling back" in output and "last lines of" in output
        assert site.sh(f"systemctl is-active {APP}") == "active"
    assert not (site.srv / ".lock").exists()
    site.tracked(journal)
    assert len(site.masters()) == 1, site.masters()


def test_a_home_page_that_raises_is_caught_by_the_probes_before_and_after_the_switch(
    site: Site,
) -> None:
    """/health answers 200, / raises: the smoke check's probe of CANARY_URLS (default /) on its
    side port stops the deploy before any switch, so no request is answered wrong; a page that
    raises on the service's port only passes the side port, and the switch's own probe sends
    the one host back to what it served, as a failed health check does."""
    on_one_release(site, "the probes are smoke.sh's and switch.sh's on every release")
    served, releases = site.current(), site.releases()
    master, journal, version = site.master(), len(site.journal()), site.get("/")["version"]
    site.app("1.3.0-home", requirements=("python-dotenv",), uses="dotenv", broken="home")
    with site.loop() as loop:
        stopped = site.fab("deploy", "--skip-tests", ok=False)
    loop.report("broken home page, one host: stopped by the smoke check")
    output = stopped.stdout + stopped.stderr
    assert "smoke: healthy on a side port, but probe http://127.0.0.1:" in output, output
    assert "/ answered 500 (CANARY_URLS: a 5xx or no answer fails the release before any switch)" in output  # fmt: skip
    assert "RuntimeError: a template error on the home page" in output  # the app's output
    assert "-> switch" not in stopped.stdout
    assert loop.failures == [] and loop.versions[-3:] == [version] * 3  # none answered wrong
    assert site.current() == served and site.releases() == releases

    site.app("1.3.0-home", requirements=("python-dotenv",), uses="dotenv", broken="home-live")
    with site.loop() as loop:
        failed = site.fab("deploy", "--skip-tests", ok=False)
    loop.report("broken home page on the service's port, one host")
    output = failed.stdout + failed.stderr
    home = f"http://127.0.0.1:{PORT}/"
    assert f"probe {home} answered 500" in failed.stdout
    assert f"switch failed: probe {home} answered 500 (CANARY_URLS:" in output
    assert f"still serving {served}. probe {home} answered 500 (CANARY_URLS)" in failed.stderr
    assert "RuntimeError: a template error on the home page" in output  # the error log's tail
    # the new release served alone from the health check to the way back: the loop may have
    # met its 500s then (never a refused connection), counted in the run's figures
    assert all("HTTPError 500" in each for each in loop.failures), loop.failures[:3]
    site.numbers["requests answered 500, one host, broken home page"] = len(loop.failures)
    assert site.get("/")["version"] == version and loop.versions[-3:] == [version] * 3
    assert site.current() == served and site.releases() == releases
    assert site.master() == master
    assert site.audit()[-1]["result"] == "failed"
    site.tracked(journal)
    assert len(site.masters()) == 1, site.masters()


def test_failing_local_tests_stop_the_deploy_before_any_host_changes(site: Site) -> None:
    on_one_release(site, "the tests run here, before anything reaches the host")
    releases, lines = site.releases(), len(site.audit())
    record = site.project / ".fabdeploy" / "deploys" / "staging.json"
    recorded = record.read_text()
    site.app("1.3.1", requirements=("python-dotenv",), uses="dotenv", broken="tests")
    failed = site.fab("deploy", ok=False)
    assert "local tests failed" in failed.stderr
    # the test step runs after the no-op check, under the lock, before any upload
    assert "-> compare" in failed.stdout and "-> upload" not in failed.stdout
    for words in ("test step: local tests failed (exit 1): 'python -m pytest -q'",
                  "set TEST_COMMAND in", "empty TEST_COMMAND= runs none", "--skip-tests"):  # fmt: skip
        assert words in failed.stderr, failed.stderr
    assert not (site.srv / ".lock").exists()  # released
    assert list((site.srv / ".incoming").iterdir()) == []  # nothing uploaded
    assert site.releases() == releases and len(site.audit()) == lines
    assert site.get("/")["version"] == "1.2.0"
    assert record.read_text() == recorded  # the untested release is never left to --resume


def test_rollback_then_cleanup_keeps_releases(site: Site) -> None:
    served, journal = site.current(), len(site.journal())
    with site.loop() as loop:
        site.fab("rollback")
    loop.report("rollback")
    site.numbers["failed requests, rollback"] = len(loop.failures)
    assert loop.failures == []
    assert site.get("/")["version"] == "1.1.0"
    assert loop.versions[-3:] == ["1.1.0"] * 3
    site.tracked(journal)
    assert site.current() < served
    last = site.audit()[-1]
    assert (last["action"], last["result"], last["release"]) == ("rollback", "ok", site.current())

    site.fab("rollback", "--release", served)  # and forward again, by name
    assert site.get("/")["version"] == "1.2.0" and site.current() == served

    for version in ("1.4.0", "1.4.1"):
        site.app(version)
        site.fab("deploy", "--skip-tests")
        assert site.get("/")["version"] == version
    releases = site.releases()
    assert len(releases) == KEEP, releases
    assert site.current() == releases[-1]
    linked = {site.venv_of(r) for r in releases}
    assert set(site.venvs()) == linked  # venvs no kept release links to are gone


def test_a_second_deploy_is_refused_naming_the_holder(site: Site) -> None:
    site.app("1.5.0")
    first = site.popen("deploy", "--skip-tests")
    try:
        deadline = time.monotonic() + 30
        while not (site.srv / ".lock" / "owner").exists():
            assert time.monotonic() < deadline and first.poll() is None, "no lock appeared"
            time.sleep(0.05)
        second = site.fab("deploy", "--skip-tests", ok=False)
        assert "deploy lock held by" in second.stderr
        assert f"(pid {first.pid} on " in second.stderr
        assert "`fab staging unlock`" in second.stderr
    finally:
        out, _ = first.communicate(timeout=120)
        site.outputs.append(out)
    assert first.returncode == 0, out
    assert site.get("/")["version"] == "1.5.0"


def test_a_killed_deploy_keeps_serving_and_the_next_one_succeeds(site: Site) -> None:
    site.app("1.6.0", requirements=("python-dotenv",), uses="dotenv")
    with site.loop() as loop:
        victim = site.kill_deploy_at("-> upload")
        time.sleep(1.0)
        assert site.get("/")["version"] == "1.5.0"
    loop.report("fab killed mid-deploy")
    assert loop.failures == [] and set(loop.versions) == {"1.5.0"}
    owner = (site.srv / ".lock" / "owner").read_text()
    assert f"pid={victim.pid}" in owner  # the dead fab's lock is still there

    with site.loop() as loop:
        after = site.fab("deploy", "--skip-tests")
    loop.report("the deploy after a killed one")
    assert loop.failures == []
    assert "is stale: that fab is no longer running; breaking it" in after.stdout
    assert site.get("/")["version"] == "1.6.0"
    assert len(site.masters()) == 1, site.masters()
    assert all((site.srv / "releases" / r / "REVISION").exists() for r in site.releases())
    assert list((site.srv / ".incoming").iterdir()) == []
    assert not (site.srv / ".lock").exists()


def test_run_tasks_reload_stop_and_start(site: Site) -> None:
    master, journal = site.master(), len(site.journal())
    with site.loop() as loop:
        reloaded = site.fab("run.reload")
    loop.report("run.reload")
    site.numbers["failed requests, run.reload"] = len(loop.failures)
    assert loop.failures == [] and "switched: master" in reloaded.stdout
    assert site.master() != master and not running_in(site, master)
    assert site.get("/")["version"] == "1.6.0"
    assert set(loop.versions) == {"1.6.0"}
    site.tracked(journal)

    site.fab("run.stop")
    assert site.sh(f"systemctl is-active {APP} || true") != "active"
    with pytest.raises(OSError):
        site.get("/")
    site.fab("run.start")
    deadline = time.monotonic() + 15
    while True:
        try:
            assert site.get("/")["version"] == "1.6.0"
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_a_deploy_killed_in_the_switch_keeps_serving_and_the_next_one_recovers(
    site: Site,
) -> None:
    """SIGKILL fab while the switch runs on the host; the next deploy puts it right."""
    site.app("1.7.0")
    with site.loop() as loop:
        site.kill_deploy_at(
            "-> switch", 0.2
        )  # USR2 sent, the new master booting (a switch takes ~0.5 s)
        time.sleep(2.0)
        after_kill = {
            "current": site.current(),
            "serves": site.get("/")["release"],
            "masters": len(site.masters()),
        }
        print("after the kill:", after_kill)
        journal = len(site.journal())
        site.app("1.7.1")
        recovered = site.fab("deploy", "--skip-tests")
    loop.report("deploy killed in the switch, then the next deploy")
    site.numbers["failed requests, killed in the switch + next deploy"] = len(loop.failures)
    assert loop.failures == [] and loop.ok > 20
    assert "is stale: that fab is no longer running; breaking it" in recovered.stdout
    assert site.get("/") == {"app": "hello", "version": "1.7.1", "release": site.current()}
    assert loop.versions[-3:] == ["1.7.1"] * 3
    assert len(site.masters()) == 1, site.masters()
    site.tracked(journal)
    assert not (site.srv / ".lock").exists()


def test_restart_is_followed_in_the_journal(site: Site) -> None:
    """`fab run.restart` (a real stop and start) while `fab logs --follow` reads the journal."""
    follow = site.popen("logs", "--follow", "-n", "1")
    lines: queue.Queue[str] = queue.Queue()
    assert follow.stdout is not None
    threading.Thread(target=lambda: [lines.put(x) for x in follow.stdout], daemon=True).start()  # type: ignore[union-attr]
    seen: list[str] = []

    def wait_for(pattern: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not any(re.search(pattern, line) for line in seen):
            try:
                seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                follow.kill()
                raise AssertionError(f"no {pattern!r} in:\n{''.join(seen)}") from None

    prefix = re.escape(f"[{site.host.address}]")
    try:
        wait_for(prefix + r" ==> .*error.log <==")
        master = site.master()
        with site.loop() as loop:
            site.fab("run.restart")
        wait_for(prefix + r" .*systemd\[1\]: Stopped .*" + APP)
        wait_for(prefix + r" .*systemd\[1\]: Started .*" + APP)
        follow.send_signal(signal.SIGINT)
        follow.communicate(timeout=15)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert follow.returncode == 0, "".join(seen)
    loop.report("run.restart (stop, then start: an outage by design)")
    site.numbers["failed requests, run.restart (outage by design)"] = len(loop.failures)
    site.numbers["requests, run.restart"] = loop.ok
    assert site.master() != master and not running_in(site, master)
    assert site.get("/")["version"] == "1.7.1"
    site.tracked(len(site.journal()))
    deadline = time.monotonic() + 10  # the follow left nothing running on the host
    while site.sh("pgrep -x journalctl || true") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert site.sh("pgrep -x journalctl || true") == ""


def test_systemctl_stop_and_start_after_a_switch(site: Site) -> None:
    """After USR2 handovers systemd still owns the master: stop ends every process of it."""
    site.fab("run.reload")
    switched = site.master()
    site.sh(f"systemctl stop {APP}")
    assert site.unit()["ActiveState"] == "inactive"
    assert site.masters() == [] and not running_in(site, switched)
    with pytest.raises(OSError):
        site.get("/")
    site.sh(f"systemctl start {APP}")
    journal = len(site.journal())
    assert site.wait_serving()["version"] == "1.7.1"
    site.tracked(journal)


def test_a_reboot_brings_the_service_back_on_current(site: Site) -> None:
    served, journal_before = site.current(), len(site.journal())
    site.fab("run.reload")  # the master now running came from a USR2 handover
    site.kit.reboot(site.host)
    answer = site.wait_serving()
    assert answer == {"app": "hello", "version": "1.7.1", "release": served}
    assert site.current() == served
    assert site.sh(f"systemctl is-enabled {APP}") == "enabled"
    journal = site.journal()
    assert len(journal) > journal_before  # the journal outlived the reboot
    site.tracked(len(journal))
    assert len(site.masters()) == 1, site.masters()


def test_status_health_and_logs_read_real_systemd(site: Site) -> None:
    status = site.fab("status")
    _header, *rows = status.stdout.splitlines()
    cells = rows[0].split()
    assert cells[:3] == [site.host.address, "active", site.current()], status.stdout
    assert "200" in cells
    health = site.fab("health")
    assert f"[{site.host.address}] healthy: HTTP 200 in" in health.stdout
    [shown] = json.loads(site.fab("status", "--json").stdout)  # nothing else on stdout
    assert (shown["host"], shown["state"], shown["release"]) == (
        site.host.address,
        "active",
        site.current(),
    )
    assert shown["pid"] == site.master() and shown["health_status"] == 200 and shown["healthy"]
    logs = site.fab("logs", "-n", "50")
    mine = [line for line in logs.stdout.splitlines() if line.startswith(f"[{site.host.address}]")]
    assert any(re.search(r"systemd\[1\]: Started .*" + APP, line) for line in mine), logs.stdout
    assert any("error.log <==" in line for line in mine), logs.stdout
    site.sh(f"systemctl stop {APP}")
    try:
        down = site.fab("health", ok=False)
        assert f"[{site.host.address}] UNHEALTHY: service inactive" in down.stderr
    finally:
        site.sh(f"systemctl start {APP}")
    assert site.wait_serving()["version"] == "1.7.1"


def test_exec_runs_in_current_as_the_app_with_its_venv_and_secrets(site: Site) -> None:
    code = (
        "import getpass, hashlib, os, shutil; "
        "print('who', getpass.getuser(), shutil.which('python'), os.getcwd()); "
        "print('sha', hashlib.sha256(os.environ['GREETING'].encode()).hexdigest())"
    )
    ran = site.fab("exec", f"python -c {shlex.quote(code)}")
    prefix = f"[{site.host.address}] "
    who = next(line for line in ran.stdout.splitlines() if line.startswith(prefix + "who "))
    assert who.split()[2:] == [
        site.app_user,
        f"{ROOT}/current/.venv/bin/python",
        f"{ROOT}/releases/{site.current()}",
    ]
    greeting = hashlib.sha256(_parsed_secrets()["GREETING"].encode()).hexdigest()
    assert f"{prefix}sha {greeting}" in ran.stdout
    shown = site.fab("exec", "--once", "echo $API_TOKEN")  # a secret value is never printed
    assert f"{prefix}***" in shown.stdout and _parsed_secrets()["API_TOKEN"] not in shown.stdout
    failed = site.fab("exec", "echo trying; exit 3", ok=False)
    assert failed.returncode == 3, failed
    assert f"exec failed on {site.host.address} (exit 3)" in failed.stderr
    tty = site.fab("exec", "--pty", "tty")
    assert re.search(r"/dev/pts/\d+", tty.stdout), tty.stdout
    token = _parsed_secrets()["API_TOKEN"]
    masked = site.fab("exec", "--pty", 'echo "token: $API_TOKEN"; echo "$GREETING"')
    assert "token: ***" in masked.stdout and token not in masked.stdout  # a terminal's too


def test_a_built_git_ignored_bundle_ships_from_a_clean_checkout_and_is_cached(
    site: Site,
) -> None:
    """examples/frontend from a committed git work tree: BUILD_COMMAND makes static/app.js
    (ignored by git) in a clean copy of the commit, the host serves it; a code change outside
    BUILD_INPUTS is a new release with the cached bundle, the command not run again."""
    on_one_release(site, "the build step runs locally: the host serves what was shipped")
    app, env_file, runs = site.project / "app", site.project / "config" / "staging.env", site.project / "runs"  # fmt: skip
    keys = env_file.read_text()
    write_frontend(app, "1.8.0")
    (app / "secrets.env").write_text(SECRETS_ENV)
    env_file.write_text(
        keys + f"BUILD_COMMAND=python3 bundle.py && echo ran >> {runs}\n"
        "BUILD_OUTPUTS=static\nBUILD_INPUTS=frontend,bundle.py\n"
    )
    (site.project / ".gitignore").write_text(".fabdeploy/\nsecrets.env\nruns\n")

    def commit(message: str) -> None:
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", message]):
            site.git(*args)

    try:
        commit("the frontend example")
        (app / "static").mkdir()  # a stale local build, ignored by git: never shipped
        (app / "static" / "app.js").write_text("// stale\n")
        first = site.fab("deploy")
        assert "build: BUILD_COMMAND ran in" in first.stdout, first.stdout
        bundle = site.host.url(PORT, "/static/app.js")
        with urllib.request.urlopen(bundle, timeout=10) as answer:
            served = answer.read().decode()
        assert served.startswith("// bundle ") and " built for staging\n" in served, served
        assert 'greet("frontend")' in served and "import " not in served
        assert site.get("/") == {"app": "hello-frontend", "version": "1.8.0", "release": site.current(), "bundle": True}  # fmt: skip
        said = re.findall(r"build: BUILD_COMMAND ran in [\d.]+s: static \(1 file, ", first.stdout)
        assert len(said) == 2, first.stdout  # in the build step, and under the summary table

        (app / "VERSION").write_text("1.8.1\n")  # not an input of the build
        commit("a code change")
        again = site.fab("deploy")
        assert re.search(r"build: static \(1 file, \d+ KiB\) reused from \.fabdeploy/build/[0-9a-f]{16} \(BUILD_COMMAND not run\)", again.stdout), again.stdout  # fmt: skip
        assert runs.read_text() == "ran\n"  # once, for two deploys
        assert site.get("/")["version"] == "1.8.1"
        with urllib.request.urlopen(bundle, timeout=10) as answer:
            assert answer.read().decode() == served
    finally:
        shutil.rmtree(site.project / ".git", ignore_errors=True)
        (site.project / ".gitignore").unlink(missing_ok=True)
        env_file.write_text(keys)


def test_break_lock_and_unlock_say_who_held_it(site: Site) -> None:
    lock = site.srv / ".lock"
    site.sh(  # as the deploy user, whose lock it is (the app user cannot make one)
        f"mkdir {ROOT}/.lock && printf 'user=ops@elsewhere\\nmachine=elsewhere\\npid=4242\\n"
        f"since=1\\ntoken=x\\n' > {ROOT}/.lock/owner",
        user=site.host.user,
    )
    refused = site.fab("deploy", "--skip-tests", ok=False)
    assert "deploy lock held by ops@elsewhere (pid 4242 on elsewhere)" in refused.stderr
    assert lock.exists()
    unlocked = site.fab("unlock")
    assert "removed the deploy lock held by ops@elsewhere" in unlocked.stdout
    assert not lock.exists()


def test_no_secret_value_appears_in_any_output(site: Site) -> None:
    values = [v for v in _parsed_secrets().values() if len(v) >= 3]
    assert len(site.outputs) > 10 and values
    for output in site.outputs:
        for value in values:
            assert value not in output
    assert site.sh("test ! -e /tmp/fabdeploy-pwned && echo clean") == "clean"


# --- quoting -------------------------------------------------------------------------------


def test_script_env_round_trips_any_value_unchanged(make_hosts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A value with spaces, quotes, ;, $(), backticks and a newline reaches the host intact
    through `Host.script(env=...)`, as the SSH user and through sudo, and runs nothing."""
    test_host = make_hosts(1)[0]
    if missing_for_netns():
        pytest.skip("[hostkit] sudo inside a host needs netns mode")
    write_project(tmp_path, test_host, make_hosts.kit)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "secrets.env").write_text(SECRETS_ENV)
    settings = config.build("staging", tmp_path)
    [host] = session.hosts(Context(config=fabric.Config()), settings)
    value = (
        "two  spaces 'single' \"double\" ; echo INJECTED; $(touch /tmp/pwned-dollar) "
        "`touch /tmp/pwned-tick` $HOME ${PATH} \\ back\nsecond line\ttab * ? [x] ~ # % ! &"
    )
    try:
        plain = host.script('printf "%s" "$VALUE"', env={"VALUE": value}, hide=True)
        assert plain.stdout == value
        host.script(
            'printf "%s" "$VALUE" > "$DEST"',
            env={"VALUE": value, "DEST": "/tmp/a file; with $(odd) name"},
            hide=True,
        )
        as_root = host.script('printf "%s" "$VALUE"', env={"VALUE": value}, sudo=True, hide=True)
        assert as_root.stdout == value
        as_user = host.script('printf "%s" "$VALUE"', env={"VALUE": value}, user="root", hide=True)
        assert as_user.stdout == value
    finally:
        host.close()
    tmp = test_host.root / "tmp"
    assert (tmp / "a file; with $(odd) name").read_text() == value
    assert not (tmp / "pwned-dollar").exists() and not (tmp / "pwned-tick").exists()
    assert "INJECTED" not in plain.stdout.replace(value, "")
