"""The monitor stage against real SSH hosts, driven like a user: `fab staging status` etc.

The app is laid out on the hosts by `deploy_app` (not `fab deploy`, which is written at the
same time): releases with REVISION, revisions.log lines, `current`, shared/log, and a
Type=forking unit running gunicorn with a pidfile, started with systemctl.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tasks.core.paths import Layout
from tasks.core.records import Audit, Revision

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))
APP = "hello"
PORT = 8000
ROOT = f"/srv/{APP}"
RELEASES = [
    ("20261124T080000.000Z", "1111111111111111111111111111111111111111", "ok"),
    ("20261124T090000.000Z", "2222222222222222222222222222222222222222", "ok"),
    ("20261124T100000.000Z", "3333333333333333333333333333333333333333", "failed"),
]
CURRENT = RELEASES[1][0]
PACKAGES = ("flask", "gunicorn")

UNIT = """\
[Unit]
Description={app} (fabdeploy monitor test)

[Service]
Type=forking
User=deploy
Group=deploy
PIDFile={paths.pidfile}
RuntimeDirectory={app}
RuntimeDirectoryMode=0755
Environment=GREETING=hello-from-test
WorkingDirectory={paths.current}
ExecStart={paths.current}/.venv/bin/python -m gunicorn --daemon --pid {paths.pidfile} \
 --chdir {paths.current} --error-logfile {paths.logs}/error.log \
 --access-logfile {paths.logs}/access.log --capture-output -w 2 -b 0.0.0.0:{port} app:app

[Install]
WantedBy=multi-user.target
"""


@pytest.fixture(scope="session")
def app_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with flask and gunicorn for the hosts' python, built once and copied to each."""
    venv = tmp_path_factory.mktemp("monitor-venv") / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *PACKAGES],
        check=True,
        capture_output=True,
    )
    return venv


def deploy_app(host, venv: Path, *, start: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Lay out a deployed app on ``host`` as `fab deploy` would, and start its service."""
    paths = Layout(ROOT, APP)
    outside = host.path(ROOT)  # the host's deploy root, seen from this machine
    for name, revision, result in RELEASES:
        if result != "ok":
            continue  # a failed deploy leaves no release behind
        release = outside / "releases" / name
        shutil.copytree(REPO / "examples" / "app", release, ignore=shutil.ignore_patterns("tests"))
        when = f"{name[:4]}-{name[4:6]}-{name[6:8]}T{name[9:11]}:{name[11:13]}:00Z"
        (release / "REVISION").write_text(Revision(revision, name, "ann@laptop", when).format())
    shutil.copytree(venv, outside / "venvs" / "v1", symlinks=True)
    audit = "".join(
        Audit(f"2026-11-24T{name[9:11]}:00:00Z", "deploy", name, rev, "ann@laptop", res).format()
        + "\n"
        for name, rev, res in RELEASES
    )
    (outside / "revisions.log").write_text(audit)
    host.path(f"/etc/systemd/system/{APP}.service").write_text(
        UNIT.format(app=APP, paths=paths, port=PORT)
    )
    links = "".join(
        f"ln -s ../../venvs/v1 {paths.release(name)}/.venv\n"
        for name, _, res in RELEASES
        if res == "ok"
    )
    host.sh(
        f"""set -e
        {links}
        mkdir -p {paths.logs}
        ln -s releases/{CURRENT} {paths.current}
        chown -R deploy:deploy {paths.root}
        """
    )
    if start:
        start_app(host)


def start_app(host) -> None:  # type: ignore[no-untyped-def]
    host.sh(f"systemctl daemon-reload && systemctl start {APP}.service", timeout=60)
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(host.url(PORT, "/health"), timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            log = host.sh(f"tail -n 30 {ROOT}/shared/log/error.log", check=False).stdout
            raise AssertionError(f"{host.name}: app not healthy after 20 s:\n{log}")
        time.sleep(0.2)


def project(tmp_path: Path, hosts: list) -> Path:  # type: ignore[type-arg]
    """A project dir with a fabfile and config/staging.env naming ``hosts``."""
    (tmp_path / "config").mkdir(parents=True)
    (tmp_path / "fabfile.py").write_text("from tasks import ns\n")
    (tmp_path / "config" / "staging.env").write_text(
        f"HOSTS={','.join(f'{h.user}@{h.address}' for h in hosts)}\n"
        f"SSH_KEY={hosts[0].client_key}\nKNOWN_HOSTS={hosts[0].known_hosts}\n"
        f"APP_NAME={APP}\nBIND=0.0.0.0:{PORT}\n"
        "APP_USER=deploy\n"  # the unit `deploy_app` writes runs the app as the SSH user
    )
    return tmp_path


def fab_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def fab(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FAB, *args], cwd=cwd, env=fab_env(), capture_output=True, text=True, timeout=60
    )


def processes_in(host, word: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Command lines of the processes in ``host``'s network namespace that contain ``word``."""
    out = host.sh(
        """me=$(readlink /proc/self/ns/net)
        for d in /proc/[0-9]*; do
          [ "$(readlink "$d/ns/net" 2>/dev/null)" = "$me" ] || continue
          [ "${d#/proc/}" = "$$" ] && continue
          tr '\\0' ' ' < "$d/cmdline" 2>/dev/null && echo
        done""",
        check=False,
    ).stdout
    return [line for line in out.splitlines() if word in line and "readlink" not in line]


@pytest.fixture
def fleet(make_hosts, app_venv: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    hosts = make_hosts(
        3, release="bookworm"
    )  # real systemd: the venv is made by Debian 12's python
    with ThreadPoolExecutor(len(hosts)) as pool:
        list(pool.map(lambda h: deploy_app(h, app_venv), hosts))
    yield hosts, project(tmp_path / "proj", hosts)
    for h in hosts:
        h.sh(f"systemctl stop {APP}.service", check=False)


def test_status_health_releases_resources_with_one_host_stopped(fleet) -> None:  # type: ignore[no-untyped-def]
    hosts, proj = fleet
    down = hosts[2]
    down.sh(f"systemctl stop {APP}.service")

    health = fab(proj, "staging", "monitor.health")
    assert health.returncode == 1, health
    assert f"1 of 3 hosts unhealthy: {down.address} (service inactive" in health.stderr
    for h in hosts[:2]:
        assert f"[{h.address}] healthy: HTTP 200 in" in health.stdout, health
    assert f"[{down.address}] UNHEALTHY: service inactive" in health.stderr
    assert "Traceback" not in health.stderr

    status = fab(proj, "staging", "status")
    assert status.returncode == 0, status
    header, *rows = status.stdout.splitlines()
    assert header.split()[:3] == ["HOST", "STATE", "RELEASE"]
    by_host = {row.split()[0]: row.split() for row in rows}
    assert set(by_host) == {h.address for h in hosts}
    for h in hosts[:2]:
        cells = by_host[h.address]
        assert cells[1:4] == ["active", CURRENT, "222222222222"], status.stdout
        assert cells[4] == "ann@laptop" and "HTTP" in cells and "200" in cells
    stopped = by_host[down.address]
    assert stopped[1:4] == ["inactive", CURRENT, "222222222222"], status.stdout
    assert "200" not in stopped

    history = fab(proj, "staging", "monitor.releases")
    assert history.returncode == 0, history
    lines = history.stdout.splitlines()[1:]
    for h in hosts:
        mine = [line.split() for line in lines if line.split()[0] == h.address]
        assert [cells[1] if cells[1] == "*" else "" for cells in mine] == ["", "*", ""]
        releases = [cells[2] if cells[1] == "*" else cells[1] for cells in mine]
        assert releases == [name for name, _, _ in reversed(RELEASES)], history.stdout
        assert "failed" in mine[0]
    limited = fab(proj, "staging", "monitor.releases", "-n", "1")
    assert len(limited.stdout.splitlines()) == 1 + len(hosts)

    res = fab(proj, "staging", "monitor.resources")
    assert res.returncode == 0, res
    header, *rows = res.stdout.splitlines()
    assert "RELEASES" in header
    assert sorted(row.split()[0] for row in rows) == sorted(h.address for h in hosts)
    assert all(row.split()[-2:] == ["2", CURRENT] for row in rows), res.stdout

    logs = fab(proj, "staging", "logs", "-n", "5")
    assert logs.returncode == 0, logs
    for h in hosts:
        assert f"[{h.address}] ==> {ROOT}/shared/log/error.log <==" in logs.stdout
        mine = [line for line in logs.stdout.splitlines() if line.startswith(f"[{h.address}]")]
        last = "Stopped" if h is down else "Started"  # systemd's own lines, from the journal
        assert any(f"systemd[1]: {last} {APP}.service" in line for line in mine), logs.stdout
    assert all(line.startswith("[") for line in logs.stdout.splitlines())


def test_logs_follow_streams_new_lines_and_stops_on_ctrl_c(fleet) -> None:  # type: ignore[no-untyped-def]
    hosts, proj = fleet
    hosts = hosts[:2]
    env_file = proj / "config" / "staging.env"
    env_file.write_text(
        env_file.read_text().replace(
            env_file.read_text().splitlines()[0],
            f"HOSTS={','.join(f'{h.user}@{h.address}' for h in hosts)}",
        )
    )
    proc = subprocess.Popen(
        [FAB, "staging", "logs", "--follow", "-n", "2"],
        cwd=proj,
        env=fab_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()

    def wait_for(text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in seen):
            try:
                seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                proc.kill()
                raise AssertionError(f"no {text!r} in:\n{''.join(seen)}") from None

    try:
        for h in hosts:  # each host's stream has started
            wait_for(f"[{h.address}] ==> {ROOT}/shared/log/error.log <==")
        word = f"written-after-start-{os.getpid()}"
        with urllib.request.urlopen(hosts[0].url(PORT, f"/log/{word}"), timeout=5) as response:
            assert response.status == 200
        wait_for(f"[{hosts[0].address}] app log: {word}")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert not any(f"[{hosts[1].address}] app log: {word}" in line for line in seen)
    for h in hosts:  # nothing is left following the logs on the hosts
        deadline = time.monotonic() + 10
        while processes_in(h, "tail") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_in(h, "tail") == []
        assert processes_in(h, "journalctl") == []
