"""The Django example (examples/django) with a Celery worker, on a 2-host fleet of real-systemd
Debian 12 hosts, each with Debian's redis-server started as a real service.

The env file gives both hosts the web and worker roles, `migrate` as MIGRATE_COMMAND (once per
fleet deploy, on the primary host, before the smoke check), `collectstatic` as an after-upload
hook (every host), `check --deploy` as SMOKE_COMMAND, and media/ and data/ (the SQLite
database) as LINKED_DIRS. One story, each step building on the one before:

1. setup and a cold deploy: the migration ran exactly once, on the primary; the app's own
   tests ran with its requirements (Django is not in fab's venv); the worker runs on both
   hosts; status and logs show it.
2. a note in the database and an uploaded media file, on the primary.
3. a redeploy while a long task runs: the task finishes (not killed) with the old code, the
   worker then runs the new release's code, no web request fails, the migration ran once.
4. a rollback, then two deploys that prune the release the data was written under: the note
   and the file are still served.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import fab_env, missing_for_netns, stop_kit, systemd_kit
from tests.hostkit import TestHost
from tests.integration.sandbox import MAX_EXPOSURE, confined, exposure, main_pid
from tests.integration.test_deploy import RequestLoop

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))
EXAMPLE = REPO / "examples" / "django"
APP, PORT = "hello-django", 8000
ROOT = f"/srv/{APP}"
WORKER = f"{APP}-worker.service"
#: Seconds the long task may run; it ends early once the test creates its media file, after
#: the deploy's restart of the worker began (Celery's warm shutdown waiting for it).
LONG_TASK = 240
FLAG = "release-the-task"


@dataclass
class Django:
    hosts: list[TestHost]
    project: Path
    env: dict[str, str]

    def fab(self, *args: str, ok: bool = True) -> str:
        proc = subprocess.run(
            [FAB, "staging", *args],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        output = proc.stdout + proc.stderr
        print(output[-8000:])
        assert (proc.returncode == 0) == ok, f"fab {args} exited {proc.returncode}:\n{output}"
        return output

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [FAB, "staging", *args],
            cwd=self.project,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def app(self, version: str) -> None:
        dest = self.project / "app"
        if dest.exists():
            shutil.rmtree(dest)
        ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", "data", "media")
        shutil.copytree(EXAMPLE, dest, ignore=ignore)
        (dest / "VERSION").write_text(version + "\n")

    def url(self, path: str, host: int = 0) -> str:
        return self.hosts[host].url(PORT, path)

    def get(self, path: str, host: int = 0) -> dict:
        with urllib.request.urlopen(self.url(path, host), timeout=10) as answer:
            return json.loads(answer.read())

    def post(self, path: str, **fields: str) -> dict:
        data = urllib.parse.urlencode(fields).encode()
        with urllib.request.urlopen(self.url(path), data=data, timeout=10) as answer:
            return json.loads(answer.read())

    def text(self, path: str) -> str:
        with urllib.request.urlopen(self.url(path), timeout=10) as answer:
            return answer.read().decode()

    def wait_task(self, task_id: str, state: str, timeout: float, host: int = 0) -> dict:
        end = time.monotonic() + timeout
        while True:
            answer = self.get(f"/result/{task_id}", host)
            if answer["state"] == state or time.monotonic() > end:
                return answer
            time.sleep(0.3)

    def releases(self, host: int = 0) -> list[str]:
        return sorted(p.name for p in self.hosts[host].path(f"{ROOT}/releases").iterdir())

    def current(self, host: int = 0) -> str:
        return os.readlink(self.hosts[host].path(f"{ROOT}/current")).rpartition("/")[2]

    def sh(self, script: str, host: int = 0) -> str:
        return self.hosts[host].sh(script).stdout.strip()


def env_file(hosts: list[TestHost], kit: object) -> str:
    names = ",".join(f"deploy@{h.address}" for h in hosts)
    return (
        f"ROLE_WEB={names}\nROLE_WORKER={names}\n"
        f"SSH_KEY={kit.client_key}\nKNOWN_HOSTS={kit.known_hosts}\n"  # type: ignore[attr-defined]
        f"APP_NAME={APP}\nAPP_DIR=app\nBIND=0.0.0.0:{PORT}\nSECRETS_FILE=app/secrets.env\n"
        "WSGI_APP=mysite.wsgi:application\nWORKERS=2\nHEALTH_TIMEOUT=20\nKEEP_RELEASES=2\n"
        "PROCESS_WORKER=celery -A mysite worker --loglevel=INFO --concurrency=2\n"
        f"STOP_TIMEOUT={LONG_TASK + 60}\n"
        "MIGRATE_COMMAND=python manage.py migrate --noinput\n"
        "HOOK_AFTER_UPLOAD=python manage.py collectstatic --noinput -v 0\n"
        "SMOKE_COMMAND=python manage.py check --deploy --fail-level WARNING\n"
        "LINKED_DIRS=media,data,staticfiles\n"
        "CANARY_BAKE=0\n"  # the probe of / runs; the bake is test_fleet's
    )


@pytest.fixture(scope="module")
def django(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Django]:
    missing = missing_for_netns()
    if missing:
        pytest.skip(f"[hostkit] a fleet needs root and network namespaces; missing: {missing}")
    kit = systemd_kit(tmp_path_factory.mktemp("django-hosts"), "bookworm")
    try:
        hosts = kit.start(2)
        for host in hosts:
            host.sh("systemctl start redis-server && redis-cli ping | grep -q PONG")
        project = tmp_path_factory.mktemp("django-project")
        (project / "fabfile.py").write_text("from tasks import ns\n")
        (project / "config").mkdir()
        (project / "config" / "staging.env").write_text(env_file(hosts, kit))
        env = fab_env()
        site = Django(hosts, project, env)
        site.app("1.0.0")
        yield site
    finally:
        stop_kit(kit)


def migrations_ran(output: str) -> list[str]:
    """The hosts the migration ran on, from a deploy's output."""
    return re.findall(r"^\[([^\]]+)\] migrate \(once, on the primary host\)", output, re.M)


def test_setup_then_a_cold_deploy_migrates_once_and_starts_the_worker(django: Django) -> None:
    out = django.fab("setup")
    for host in django.hosts:
        assert f"/etc/systemd/system/{WORKER}: changed" in out
        shared = host.path(f"{ROOT}/shared")
        for linked in ("media", "data"):
            assert (shared / linked).is_dir()
            assert oct((shared / linked).stat().st_mode & 0o777) == "0o750"
    out = django.fab("deploy")
    # Django is in no venv but the app's: the test step's venv holds the app's requirements
    assert re.search(r"with venv \S+: requirements\.txt \+ requirements-dev\.txt\)", out)
    primary = django.hosts[0].address
    assert migrations_ran(out) == [primary]  # once, on the first host of the web role
    assert "Apply all migrations" in out and "Applying jobs.0001_initial... OK" in out
    assert "System check identified no issues" in out  # check --deploy, in the smoke step
    assert not django.hosts[1].path(f"{ROOT}/shared/data/db.sqlite3").exists()
    assert django.hosts[0].path(f"{ROOT}/shared/data/db.sqlite3").stat().st_size > 0
    for number, host in enumerate(django.hosts):
        assert django.get("/", number)["version"] == "1.0.0"
        release = host.path(f"{ROOT}/current")
        static = f"{ROOT}/current/staticfiles/admin/css/base.css"  # in shared/: the app user's
        assert django.sh(f"stat -c %U {static}", number) == APP
        assert os.readlink(release / "media") == f"{ROOT}/shared/media"
        assert django.sh(f"systemctl is-active {WORKER}", number) == "active"
        task = django.get("/enqueue?seconds=0", number)["id"]
        done = django.wait_task(task, "SUCCESS", 30, number)
        assert done["result"]["version"] == "1.0.0", done
    status = django.fab("status")
    assert "PROCESSES" in status and status.count("worker active") == 2
    logs = django.fab("logs", "-n", "200", "--roles", "worker")
    assert f"==> journal of {APP}.service {WORKER} <==" in logs
    assert "celery@" in logs and "ready." in logs


def test_the_web_and_worker_units_run_sandboxed_and_rate_at_most_4(django: Django) -> None:
    """Both units as systemd 252 applies them (docs/security.md#what-the-unit-forbids): rated
    <= 4.0 by `systemd-analyze security`; each process without privileges, writing its linked
    directories, logs (and the web its pid directory) and nothing else. The web serves and the
    worker ran its tasks under them in the test before."""
    host = django.hosts[0]
    for unit in (f"{APP}.service", WORKER):
        assert exposure(host, unit) <= MAX_EXPOSURE, django.sh(f"systemd-analyze security {unit}")
        writable = django.sh(f"systemctl show -p ReadWritePaths --value {unit}").split()
        shared = ("media", "data", "staticfiles", "log")  # LINKED_DIRS (the recipe), then logs
        linked = [f"{ROOT}/shared/{name}" for name in shared]
        pids = os.path.dirname(django.sh(f"systemctl show -p PIDFile --value {unit}"))
        assert writable == linked + ([pids] if unit == f"{APP}.service" else []), writable
        confined(host, main_pid(host, unit), writable, [f"{ROOT}/current", ROOT, "/etc"])


def test_data_written_in_shared_media_and_the_database(django: Django) -> None:
    assert django.post("/notes", text="kept")["notes"] == ["kept"]
    name = django.post("/upload", name="upload.txt", text="a media file")["name"]
    assert django.text(f"/media/{name}") == "a media file"
    assert django.hosts[0].path(f"{ROOT}/shared/media/{name}").read_text() == "a media file"
    django.written_under = django.current()  # type: ignore[attr-defined]
    django.media_name = name  # type: ignore[attr-defined]


def test_a_redeploy_lets_the_running_task_finish_and_drops_no_request(django: Django) -> None:
    task = django.get(f"/enqueue?seconds={LONG_TASK}&until={FLAG}")["id"]
    assert django.wait_task(task, "STARTED", 20)["state"] == "STARTED"
    journal = len(django.sh(f"journalctl -u {WORKER} -o cat --no-pager").splitlines())
    django.app("2.0.0")
    loop = RequestLoop(django.url("/"), limit=LONG_TASK)
    with loop:
        deploying = django.popen("deploy")
        end = time.monotonic() + 180
        while "Warm shutdown" not in "\n".join(
            django.sh(f"journalctl -u {WORKER} -o cat --no-pager").splitlines()[journal:]
        ):  # the deploy restarts the worker: it stops taking tasks, finishes its running one
            assert deploying.poll() is None and time.monotonic() < end, "no warm shutdown"
            time.sleep(0.5)
        time.sleep(3)
        assert django.wait_task(task, "SUCCESS", 0)["state"] == "STARTED"  # still running
        assert django.get("/")["version"] == "2.0.0"  # the web switch went first
        django.hosts[0].path(f"{ROOT}/shared/media/{FLAG}").write_text("")
        out, _ = deploying.communicate(timeout=120)
        print(out[-6000:])
        assert deploying.returncode == 0, out
    loop.report("Django redeploy during a long Celery task")
    assert loop.failures == [] and loop.ok > 50
    assert loop.versions[-3:] == ["2.0.0"] * 3
    assert migrations_ran(out) == [django.hosts[0].address]
    done = django.wait_task(task, "SUCCESS", 30)
    assert done["state"] == "SUCCESS", done  # finished, not killed
    assert done["result"]["version"] == "1.0.0"  # the code it started with
    stopping = django.sh(
        f"journalctl -u {WORKER} -o short-unix --no-pager | grep 'Stopping' | tail -n 1 | cut -d' ' -f1"
    )
    started, finished = done["result"]["started"], done["result"]["finished"]
    assert started < float(stopping) < finished, (started, stopping, finished)  # ran through
    django.hosts[0].path(f"{ROOT}/shared/media/{FLAG}").unlink()
    for number in range(2):
        quick = django.get("/enqueue?seconds=0", number)["id"]
        result = django.wait_task(quick, "SUCCESS", 30, number)
        assert result["result"]["version"] == "2.0.0", result  # the new release's code
    shown = django.sh(f"systemctl show -p NRestarts --value {WORKER}")
    assert shown == "0"  # restarted by the deploy, never by systemd after a failure


def test_data_survives_a_rollback_and_the_cleanup_of_its_release(django: Django) -> None:
    written_under = django.written_under  # type: ignore[attr-defined]
    name = django.media_name  # type: ignore[attr-defined]
    django.fab("rollback")
    assert django.current() == written_under
    assert django.get("/")["version"] == "1.0.0"
    assert django.get("/notes")["notes"] == ["kept"]
    assert django.text(f"/media/{name}") == "a media file"
    for version in ("3.0.0", "4.0.0"):
        django.app(version)
        django.fab("deploy", "--skip-tests")  # the suite ran in the deploys before
    assert written_under not in django.releases()  # pruned (KEEP_RELEASES=2)
    assert django.get("/")["version"] == "4.0.0"
    assert django.get("/notes")["notes"] == ["kept"]
    assert django.text(f"/media/{name}") == "a media file"
    mode = django.sh(f"stat -c %U:%a {ROOT}/shared/data {ROOT}/shared/media")
    assert mode.split() == [f"{APP}:750", f"{APP}:750"]  # the app user's (APP_USER unset)


def test_run_tasks_take_a_process_and_exec_once_runs_on_the_primary(django: Django) -> None:
    out = django.fab("run.stop", "--process", "worker")
    assert out.count(f"stopped {WORKER}") == 2
    assert django.sh(f"systemctl is-active {WORKER} || true") == "inactive"
    assert "process worker inactive" in django.fab("health", ok=False)
    out = django.fab("run.start", "--process", "worker")
    assert out.count(f"{WORKER}: running (pid ") == 2
    out = django.fab("exec", "--once", "--command", "python manage.py showmigrations jobs")
    primary = django.hosts[0].address
    assert f"[{primary}] jobs" in out and f"[{primary}]  [X] 0001_initial" in out
    assert f"[{django.hosts[1].address}]" not in out


def test_a_process_that_does_not_come_back_fails_naming_host_and_journal(django: Django) -> None:
    env_file = django.project / "config" / "staging.env"
    good = env_file.read_text()
    try:
        env_file.write_text(
            good.replace("celery -A mysite worker", "celery -A nosuchproject worker")
        )
        django.fab("setup.service")
        out = django.fab("run.restart", "--process", "worker", ok=False)
        for host in django.hosts:
            assert f"[{host.address}] {WORKER} did not come back" in out
        assert "nosuchproject" in out  # the unit's journal lines
        assert "restart failed on " in out
    finally:
        env_file.write_text(good)
        django.fab("setup.service")
        django.fab("run.restart", "--process", "worker")
    assert django.get("/")["version"] == "4.0.0"  # the web process never stopped
