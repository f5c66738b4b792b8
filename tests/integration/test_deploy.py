"""The deploy pipeline against a real SSH host, driven the way a user drives it: `fab staging
setup`, `fab staging deploy`, `fab staging rollback` run as subprocesses from a project dir.

Every check looks at what the host SERVES (HTTP from outside) and what lies on its disk, not
only at exit codes. One host walks the whole story in order (setup, first deploy, unchanged
redeploy, code change, requirement change, broken releases, rollback, cleanup, locks, a killed
deploy); each step builds on the one before, which keeps the file well under a few minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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

from tasks import config, remote
from tests.hostkit import HostKit, TestHost
from tests.integration.apps import write_app

try:  # stop our kit too if pytest is killed (conftest's registry), when available
    from tests.conftest import _LIVE_KITS, missing_for_netns
except ImportError:  # pragma: no cover
    _LIVE_KITS = []

    def missing_for_netns() -> str | None:
        return None


REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))
APP = "hello"
PORT = 8000
ROOT = f"/srv/{APP}"
KEEP = 3
#: Secrets with characters a shell, systemd or an env parser could mangle; never printed.
SECRETS_ENV = (
    "# test secrets\n"
    "GREETING='hello \"friend\"; $(touch /tmp/fabdeploy-pwned) `id` $HOME \\back 42'\n"
    "API_TOKEN=tok-5d1c9e0a7b3f11\n"
)

# --- helpers -------------------------------------------------------------------------------


class RequestLoop:
    """GET a URL every ~20 ms in a thread (at most 60 s); count failures, remember versions."""

    def __init__(self, url: str, limit: float = 60.0) -> None:
        self.url = url
        self.limit = limit
        self.ok = 0
        self.failures: list[str] = []
        self.versions: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        end = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                with urllib.request.urlopen(self.url, timeout=10) as answer:
                    self.versions.append(json.loads(answer.read())["version"])
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
        return line


@dataclass
class Site:
    """One test host plus the project dir `fab` runs in, and every output fab printed."""

    host: TestHost
    project: Path
    env: dict[str, str]
    outputs: list[str] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)

    @property
    def srv(self) -> Path:
        """The host's deploy root, seen from this machine."""
        return self.host.root / "srv" / APP

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

    def app(self, version: str, **kw: object) -> None:
        write_app(self.project / "app", version, **kw)  # type: ignore[arg-type]
        (self.project / "app" / "secrets.env").write_text(SECRETS_ENV)

    def get(self, path: str = "/") -> dict[str, str]:
        with urllib.request.urlopen(self.host.url(PORT, path), timeout=10) as answer:
            return json.loads(answer.read())

    def loop(self) -> RequestLoop:
        return RequestLoop(self.host.url(PORT, "/"))

    def sh(self, script: str, user: str = "root") -> str:
        return self.host.sh(script, user=user).stdout.strip()

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
        return int((self.srv / "shared" / "pids" / "gunicorn.pid").read_text())


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _parsed_secrets() -> dict[str, str]:
    import io

    from dotenv import dotenv_values

    return {k: v or "" for k, v in dotenv_values(stream=io.StringIO(SECRETS_ENV)).items()}


def write_project(project: Path, host: TestHost, kit: HostKit) -> None:
    (project / "config").mkdir(parents=True, exist_ok=True)
    (project / "fabfile.py").write_text("from tasks import ns\n")
    (project / "config" / "staging.env").write_text(
        f"HOSTS={host.user}@{host.address}"
        + (f":{host.port}" if host.port not in (0, 22) else "")
        + f"\nSSH_KEY={kit.client_key}\nKNOWN_HOSTS={kit.known_hosts}\n"
        f"APP_NAME={APP}\nAPP_DIR=app\nBIND=0.0.0.0:{PORT}\nSECRETS_FILE=app/secrets.env\n"
        f"WORKERS=2\nHEALTH_TIMEOUT=10\nKEEP_RELEASES={KEEP}\n"
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A fresh host (its own kit, torn down after this module) and a project deploying to it."""
    missing = missing_for_netns()
    if missing:
        pytest.skip(
            f"[hostkit] deploying needs root and network namespaces (sudo, systemctl in a host); missing: {missing}"
        )
    kit = HostKit(tmp_path_factory.mktemp("deploy-hosts"))
    _LIVE_KITS.append(kit)
    try:
        host = kit.start(1)[0]
        project = tmp_path_factory.mktemp("deploy-project")
        write_project(project, host, kit)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FABDEPLOY_")}
        env["PYTHONPATH"] = str(REPO)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
        site = Site(host, project, env)
        site.app("1.0.0")
        yield site
        print("deploy numbers:", json.dumps(site.numbers, indent=1))
    finally:
        kit.stop()
        if kit in _LIVE_KITS:
            _LIVE_KITS.remove(kit)


# --- the story, in order -------------------------------------------------------------------


def test_setup_then_first_deploy_serves_the_app_as_deploy(site: Site) -> None:
    first = site.fab("setup")
    assert "directories: changed" in first.stdout
    assert "secrets shared/.env: changed (API_TOKEN, GREETING)" in first.stdout

    second = site.fab("setup")
    items = [line for line in second.stdout.splitlines() if re.match(r"^\[[^]]+\] [^ ].*: ", line)]
    assert len(items) >= 8, second.stdout
    assert all(re.search(r": no change( \(.*\))?$", line) for line in items), second.stdout
    assert "daemon-reload" not in second.stdout

    with pytest.raises(OSError):
        site.get("/")  # nothing serves before the first deploy
    cold = site.fab("deploy")
    site.numbers["cold deploy seconds"] = round(cold.seconds, 1)  # type: ignore[attr-defined]
    answer = site.get("/")
    assert answer["version"] == "1.0.0"
    assert answer["release"] == site.current()
    # the host's Python matches the local one: no pip on the host, packages prebuilt locally
    assert re.search(r"venv [0-9a-f]{16} built from the prebuilt packages", cold.stdout)
    assert "2 passed" in cold.stdout  # the local test gate ran

    master = site.master()
    users = site.sh(f"ps -o user= -p {master}; ps -o user= --ppid {master}").split()
    assert users == ["deploy"] * 3, users  # master + WORKERS=2, all as the deploy user
    assert site.sh(f"systemctl is-active {APP}") == "active"

    env_file = site.srv / "shared" / ".env"
    assert site.sh(f"stat -c '%U %G %a' {ROOT}/shared/.env") == "deploy deploy 600"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert not (site.srv / "releases" / site.current() / "secrets.env").exists()  # never shipped
    greeting = _parsed_secrets()["GREETING"]
    assert site.get("/greeting-sha256")["sha256"] == hashlib.sha256(greeting.encode()).hexdigest()
    assert not (site.host.root / "tmp" / "fabdeploy-pwned").exists()

    release = site.srv / "releases" / site.current()
    assert os.readlink(release / ".env") == "../../shared/.env"
    assert not (release / "wheelhouse").exists()
    assert list((site.srv / ".incoming").iterdir()) == []
    assert site.get("/log/printed-by-the-app") == {"logged": "printed-by-the-app"}
    assert "app log: printed-by-the-app" in (site.srv / "shared" / "log" / "error.log").read_text()

    refused = site.fab("rollback", ok=False)
    assert "no previous release to roll back to" in refused.stderr


def test_unchanged_redeploy_changes_nothing_and_forced_reuses_the_venv(site: Site) -> None:
    before, master = site.current(), site.master()
    digest = site.venv_of(before)
    venv = site.srv / "venvs" / digest
    stat_before = (venv.stat().st_ino, venv.stat().st_mtime_ns)
    venvs_before = site.venvs()

    again = site.fab("deploy")
    site.numbers["unchanged deploy seconds"] = round(again.seconds, 1)  # type: ignore[attr-defined]
    assert "no change: every host already serves revision" in again.stdout
    assert "-> upload" not in again.stdout
    assert (site.current(), site.master()) == (before, master)  # nothing restarted

    forced = site.fab("deploy", "--force")
    assert f"venv {digest} reused" in forced.stdout
    assert "built" not in forced.stdout.split("-> install")[1].split("-> smoke")[0]
    assert site.current() != before and site.venv_of(site.current()) == digest
    assert (venv.stat().st_ino, venv.stat().st_mtime_ns) == stat_before  # pip never ran
    assert not list(venv.glob("**/pip-install.log"))
    assert site.venvs() == venvs_before
    assert site.get("/")["release"] == site.current()


def test_code_change_is_served_with_no_failed_request(site: Site) -> None:
    old_master = site.master()
    site.app("1.1.0")
    with site.loop() as loop:
        site.fab("deploy")
    site.numbers["failed requests, code change"] = len(loop.failures)
    loop.report("redeploy with a code change")
    assert loop.failures == [] and loop.ok > 20
    assert loop.versions[-5:] == ["1.1.0"] * 5
    assert site.get("/")["version"] == "1.1.0"
    assert site.get("/")["release"] == site.current()
    # the service is tracked through the handoff: new master in the pidfile, old one gone
    new_master = site.master()
    assert new_master != old_master
    assert site.sh(f"systemctl is-active {APP}") == "active"
    assert site.sh(f"systemctl show -p MainPID {APP}") == f"MainPID={new_master}"
    assert not running(old_master)


def test_requirement_change_gets_a_new_venv_with_no_failed_request(site: Site) -> None:
    old_venv = site.venv_of(site.current())
    site.app("1.2.0", requirements=("python-dotenv",), uses="dotenv")
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
    new_venv = site.venv_of(site.current())
    assert new_venv != old_venv and f"venv {new_venv} built with pip" in out.stdout
    assert (site.srv / "venvs" / new_venv / "pip-install.log").exists()
    assert site.get("/") == {
        "app": "hello",
        "version": "1.2.0",
        "release": site.current(),
        "uses": "dotenv",
    }


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
    served, releases = site.current(), site.releases()
    master = site.master()
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


def test_failing_local_tests_stop_the_deploy_before_any_host_changes(site: Site) -> None:
    releases, lines = site.releases(), len(site.audit())
    sshd_log = site.host.root / "log" / "sshd.log"
    logins = sshd_log.read_text().count("Accepted publickey")
    site.app("1.3.1", requirements=("python-dotenv",), uses="dotenv", broken="tests")
    failed = site.fab("deploy", ok=False)
    assert "local tests failed" in failed.stderr
    assert "-> lock" not in failed.stdout and "-> upload" not in failed.stdout
    assert sshd_log.read_text().count("Accepted publickey") == logins, "no SSH login at all"
    assert site.releases() == releases and len(site.audit()) == lines
    assert site.get("/")["version"] == "1.2.0"


def test_rollback_then_cleanup_keeps_releases(site: Site) -> None:
    served = site.current()
    with site.loop() as loop:
        site.fab("rollback")
    loop.report("rollback")
    assert loop.failures == []
    assert site.get("/")["version"] == "1.1.0"
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
        victim = site.popen("deploy", "--skip-tests")
        seen = []
        assert victim.stdout is not None
        for line in victim.stdout:
            seen.append(line)
            if "-> upload" in line:
                break
        victim.send_signal(signal.SIGKILL)
        rest, _ = victim.communicate(timeout=30)
        site.outputs.append("".join(seen) + rest)
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
    assert all((site.srv / "releases" / r / "REVISION").exists() for r in site.releases())
    assert list((site.srv / ".incoming").iterdir()) == []
    assert not (site.srv / ".lock").exists()


def test_run_tasks_reload_stop_and_start(site: Site) -> None:
    master = site.master()
    with site.loop() as loop:
        reloaded = site.fab("run.reload")
    loop.report("run.reload")
    assert loop.failures == [] and "switched: master" in reloaded.stdout
    assert site.master() != master and not running(master)
    assert site.get("/")["version"] == "1.6.0"

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


def test_break_lock_and_unlock_say_who_held_it(site: Site) -> None:
    lock = site.srv / ".lock"
    site.sh(
        f"mkdir {ROOT}/.lock && printf 'user=ops@elsewhere\\nmachine=elsewhere\\npid=4242\\n"
        f"since=1\\ntoken=x\\n' > {ROOT}/.lock/owner",
        user="deploy",
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
    assert not (site.host.root / "tmp" / "fabdeploy-pwned").exists()


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
    [host] = remote.hosts(Context(config=fabric.Config()), settings)
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
