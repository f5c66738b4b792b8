"""The compromised app (issue 21), on a real-systemd Debian 12 host.

The app user (the default: a system user named after APP_NAME) is the attacker: it plants a
link or a replacement at every path it can write that root or the deploy user might touch,
tries to change what is not its own (code, venv, ``current``, /etc/<app>, the lock, the audit
log), holds every lock it can open and tries sudo. Then ``setup``, ``deploy``, ``plan``,
``run.reload``, ``rollback``, ``exec``, ``logs``, ``status`` and a deploy's cleanup run, and:

- nothing outside the app's data changed owner, mode or content (a snapshot of /etc, /root,
  the deploy user's home, /usr/local and the deploy root before and after, taken with lstat,
  never following a link); what the deploys added under the deploy root is the deploy
  user's, never the app user's;
- no planted program ran as another user than the app user (each writes a marker naming
  who ran it), and no output of fab shows a root-only or deploy-only file a link points at;
- the app user could change none of the deploy's files and held none of its locks.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import missing_for_netns, stop_kit, systemd_kit
from tests.hostkit import TestHost
from tests.integration.test_fleet import EXAMPLE_FABFILE, Fleet, start_fleet

APP, ROOT = "hello", "/srv/hello"
#: The app user: APP_USER's default, a system user named after APP_NAME.
ATTACKER = APP
DATA = "uploads"
#: Where a planted program writes who ran it (world-writable, sticky, not the app's tmp).
MARKS = "/var/tmp/fabdeploy-ran-as"
#: Content only root (or only the deploy user) can read: fab must never print it.
ROOT_SECRET = "/root/fabdeploy-root-only"
DEPLOY_SECRET = "/home/deploy/fabdeploy-deploy-only"
SECRET_WORDS = {ROOT_SECRET: "root-only-8c1f0e", DEPLOY_SECRET: "deploy-only-3b7a22"}

#: Walks the snapshot roots with lstat (never following links): path -> [uid, gid, mode, kind,
#: sha256 of a file's content | a link's target | ""]. Skips the app's data and logs, and
#: files that change without fabdeploy (caches, the journal).
SNAPSHOT = r"""
import hashlib, json, os, stat, sys
roots = sys.argv[1].split(",")
skip = tuple(sys.argv[2].split(","))
found = {}
for top in roots:
    for here, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not os.path.join(here, d).startswith(skip)]
        for name in [*dirs, *files]:
            path = os.path.join(here, name)
            if path.startswith(skip):
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                kind, what = "link", os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                kind = "file"
                with open(path, "rb") as handle:
                    what = hashlib.sha256(handle.read()).hexdigest()
            elif stat.S_ISDIR(st.st_mode):
                kind, what = "dir", ""
            else:
                kind, what = "other", ""
            found[path] = [st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), kind, what]
json.dump(found, sys.stdout)
"""

#: A planted program: it records who ran it, then fails.
PAYLOAD = f"#!/bin/sh\nid -un >> {MARKS}/$(id -un) 2>/dev/null\nexit 1\n"


class Attacked(Fleet):
    """One host; the app keeps uploads in shared/ (LINKED_DIRS) and two releases."""

    @property
    def host(self) -> TestHost:
        return self.hosts[0]

    def settings(self) -> None:
        path = self.project / "config" / "staging.env"
        path.write_text(path.read_text() + f"LINKED_DIRS={DATA}\nKEEP_RELEASES=2\n")

    def as_app(self, script: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``script`` on the host as the app user (not sandboxed: a stronger attacker)."""
        return self.host.sh(script, user=ATTACKER, check=check)

    def snapshot(self) -> dict[str, list[object]]:
        """Owner, mode and content of everything but the app's own data (see `SNAPSHOT`)."""
        roots = ["/etc", "/root", "/home/deploy", "/usr/local", ROOT]
        skip = [
            f"{ROOT}/shared/{DATA}",
            f"{ROOT}/shared/log",
            "/etc/ld.so.cache",
            "/home/deploy/.cache",
            "/root/.cache",
        ]
        proc = self.host.sh(
            f"python3 -c {shlex.quote(SNAPSHOT)} {','.join(roots)} {','.join(skip)}", timeout=120
        )
        return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    missing = missing_for_netns()
    if missing:
        pytest.skip(f"[hostkit] a real-systemd host needs root and namespaces; missing: {missing}")
    kit = systemd_kit(tmp_path_factory.mktemp("adversary-hosts"), "bookworm")
    try:
        project = tmp_path_factory.mktemp("adversary-project")
        shutil.copy(EXAMPLE_FABFILE, project / "fabfile.py")
        site = start_fleet(kit, project, Attacked, count=1)
        site.settings()
        site.app("1.0.0")
        site.fab("staging", "setup")
        site.fab("staging", "deploy")
        site.host.sh(
            f"install -d -m 1777 {MARKS}\n"
            f"umask 077\necho {SECRET_WORDS[ROOT_SECRET]} > {ROOT_SECRET}\n"
            f"echo {SECRET_WORDS[DEPLOY_SECRET]} > {DEPLOY_SECRET}\n"
            f"chown deploy:deploy {DEPLOY_SECRET}\n"
        )
        yield site
    finally:
        stop_kit(kit)


def plant(site: Attacked, logs: tuple[str, ...] = ("app.log", "other.log")) -> list[str]:
    """As the app user: a link to a secret, to /etc and to the deploy user's keys, and a
    program that records who ran it, at every name fabdeploy uses in each place the app
    user can write (in shared/log: ``logs``); returns the places it could write."""
    targets = [ROOT_SECRET, DEPLOY_SECRET, "/etc/shadow", "/home/deploy/.ssh/authorized_keys"]
    places = [f"{ROOT}/shared/{DATA}", f"{ROOT}/shared/log", f"/run/{APP}"]
    names = {
        f"{ROOT}/shared/log": list(logs),
        f"/run/{APP}": ["gunicorn.pid.2", "ready.1.1", "gunicorn.pid.fabdeploy"],
        f"{ROOT}/shared/{DATA}": ["x", ".env"],
    }
    lines = []
    for place in places:
        for index, name in enumerate(names[place]):
            target = targets[index % len(targets)]
            lines.append(f"ln -sfn {target} {place}/{name} 2>/dev/null || true")
        lines.append(f"ln -sfn /etc {place}/etc 2>/dev/null || true")
        for tool in ("bash", "sh", "python", "python3", "gunicorn", "cat", "kill", "tail"):
            lines.append(
                f"printf %s {shlex.quote(PAYLOAD)} > {place}/{tool} 2>/dev/null "
                f"&& chmod 755 {place}/{tool} || true"
            )
    site.as_app("\n".join(lines))
    writable = site.as_app(
        "for d in / /etc /srv /run /tmp /var/tmp "
        f"{ROOT} {ROOT}/releases {ROOT}/venvs {ROOT}/shared {ROOT}/current/ /etc/{APP} "
        f"{' '.join(places)}; do [ -w $d ] && echo $d; done"
    ).stdout.split()
    return writable


def test_the_app_user_cannot_touch_what_is_not_its_own(site: Attacked) -> None:
    writable = plant(site)
    assert sorted(writable) == sorted(
        ["/tmp", "/var/tmp", f"{ROOT}/shared/{DATA}", f"{ROOT}/shared/log", f"/run/{APP}"]
    ), writable
    release = site.current(site.host)
    attempts = {
        "code": f"echo x >> {ROOT}/current/app.py",
        "a new file in the release": f"touch {ROOT}/releases/{release}/evil.py",
        "the venv": f"touch {ROOT}/current/.venv/bin/evil",
        "current": f"ln -sfn /tmp {ROOT}/current",
        "the lock": f"mkdir {ROOT}/.lock",
        "the audit log": f"echo forged >> {ROOT}/revisions.log",
        "gunicorn.conf.py": f"echo x >> /etc/{APP}/gunicorn.conf.py",
        "the env file": f"echo X=1 >> /etc/{APP}/env",
        "the unit": f"echo x >> /etc/systemd/system/{APP}.service",
        "sudo": "sudo -n true",
        "sudo as the deploy user": "sudo -n -u deploy true",
        "the deploy user's home": "touch /home/deploy/x",
    }
    done = {what: site.as_app(cmd).returncode == 0 for what, cmd in attempts.items()}
    assert not any(done.values()), {what for what, ok in done.items() if ok}
    # every lock file of the deploy root: the app user cannot even open one to flock it
    locks = site.host.sh(f"find {ROOT} -name '*lock*' -not -path '{ROOT}/shared/*'").stdout
    held = [
        path
        for path in locks.split()
        if site.as_app(f"flock -n -s {shlex.quote(path)} true").returncode == 0
    ]
    assert held == [], held


def test_commands_over_planted_links_change_nothing_outside_the_data(site: Attacked) -> None:
    plant(site)
    before = site.snapshot()
    outputs = []
    site.app("2.0.0")
    for args in (
        ("setup",),
        ("deploy",),
        ("plan",),
        ("run.reload",),
        ("rollback",),
        ("exec", "cat", f"{ROOT}/shared/{DATA}/x"),
        ("logs", "-n", "50"),
        ("status",),
        ("releases",),
    ):
        proc = site.fab("staging", *args, ok=args[0] != "exec")
        outputs.append(proc.stdout + proc.stderr)
    site.app("3.0.0")  # a third release: cleanup removes the oldest (KEEP_RELEASES=2)
    outputs.append(site.fab("staging", "deploy").stdout)
    # gunicorn's own logs replaced by links too (the running master keeps its open files;
    # a new one could not start, so no deploy follows): whoever reads them must not follow
    plant(site, ("error.log", "access.log"))
    for args in (("logs", "-n", "50"), ("status",), ("plan",), ("check",)):
        proc = site.fab("staging", *args)
        outputs.append(proc.stdout + proc.stderr)
    after = site.snapshot()

    shown = "\n".join(outputs)
    for path, word in SECRET_WORDS.items():
        assert word not in shown, f"fab printed {path}'s content"
    assert not re.search(r"\broot:[^:\s]*:\d{4,}:", shown), "fab printed /etc/shadow"
    ran = site.host.sh(f"ls {MARKS}").stdout.split()
    assert set(ran) <= {ATTACKER}, f"a planted program ran as {ran}"

    deploy_uid = int(site.host.sh("id -u deploy").stdout)
    changed, wrong_owner = [], []
    for path, was in before.items():
        now = after.get(path)
        if now is None:  # only whole releases go (cleanup), and nothing outside the root
            assert path.startswith(f"{ROOT}/releases/"), f"{path} was removed"
            continue
        if path in (f"{ROOT}/revisions.log", f"{ROOT}/current"):
            assert now[:3] == was[:3], (path, was, now)
            continue
        if now != was:
            changed.append((path, was, now))
    assert changed == [], changed[:10]
    for path, now in after.items():
        if path not in before and path.startswith(ROOT) and now[0] != deploy_uid:
            wrong_owner.append((path, now))
    assert wrong_owner == [], wrong_owner[:10]
