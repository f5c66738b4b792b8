"""The ownership model (docs/security.md#ownership) on a real-systemd host (Debian 12).

After ``fab setup`` and a deploy, every path of the model has exactly its owner and mode (each
one stat'ed), and the app user, who runs the app, can write none of its code, venv, `current`,
/etc/<app>, the lock or revisions.log, while it reads its secrets and writes its data.

A host deployed by fabdeploy before the model is migrated by ``fab setup``. The old layout is
made by the old code itself: fabdeploy's ``tasks`` package as of commit `OLD` (from git, into a
temporary directory) runs ``fab setup`` and ``fab deploy``, then the app's data is written as
its old user. Once with APP_USER unset then (the SSH user ran the app) and SECRETS_FILE kept;
once with APP_USER=web then and no SECRETS_FILE now (the secrets' content moves as it is).
The new ``fab setup`` must keep every byte of the data, move the secrets, leave a link the old
app user planted a link, stop the service and start it again on the new unit (its user and
paths changed), and lay out every path as a fresh setup does; a deploy and a second setup
(nothing to change) follow.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import HostFactory, fab_env
from tests.integration.test_deploy import APP, ROOT, Site, write_project

#: main before the ownership model: the secrets in shared/.env, gunicorn.conf.py in shared/,
#: the pidfile in shared/pids, the deploy root the app user's.
OLD = "79ffe3c"
REPO = Path(__file__).resolve().parents[2]
ETC, RUN = f"/etc/{APP}", f"/run/{APP}"
#: The linked paths: nested ones (the directories above them are the deploy user's).
NESTED = (("media", "instance/uploads"), ("data/app.sqlite3",))
#: Flat ones: fabdeploy before the model could not make a nested one for another APP_USER.
FLAT = (("media",), ("app.sqlite3",))


def project(host: object, kit: object, where: Path, extra: str = "", linked=NESTED) -> Path:  # type: ignore[no-untyped-def]
    """A project deploying examples/app to ``host`` with ``linked`` paths and ``extra`` keys."""
    write_project(where, host, kit)  # type: ignore[arg-type]
    env = where / "config" / "staging.env"
    dirs, files = linked
    keys = f"LINKED_DIRS={','.join(dirs)}\nLINKED_FILES={','.join(files)}\nTEST_COMMAND=\n"
    env.write_text(env.read_text() + keys + extra)
    return where


def owners(site: Site, app_user: str, linked=NESTED) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Every path of the model -> its ``owner:group mode``, as `fab setup` and a deploy leave
    it (D the SSH user, A ``app_user``)."""
    d, a = site.host.user, app_user
    dg, ag = site.sh(f"id -gn {d}"), site.sh(f"id -gn {a}")
    data: dict[str, str] = {}
    for paths, mode in zip(linked, ("750", "640")):
        for path in paths:
            data[f"{ROOT}/shared/{path}"] = f"{a}:{ag} {mode}"
            if "/" in path:  # the directory above a nested linked path: D's, A passes through
                data[f"{ROOT}/shared/{path.rpartition('/')[0]}"] = f"{d}:{dg} 755"
    return {
        ROOT: f"{d}:{ag} 750",
        f"{ROOT}/releases": f"{d}:{dg} 755",
        f"{ROOT}/venvs": f"{d}:{dg} 755",
        f"{ROOT}/current": f"{d}:{dg} 777",  # a link
        f"{ROOT}/shared": f"{d}:{dg} 755",
        **data,
        f"{ROOT}/shared/log": f"{a}:{ag} 750",
        f"{ROOT}/.incoming": f"{d}:{dg} 700",
        f"{ROOT}/.switch": f"{d}:{dg} 700",
        ETC: f"root:{ag} 750",
        f"{ETC}/env": f"root:{ag} 640",
        f"{ETC}/gunicorn.conf.py": f"root:{ag} 640",
        f"/etc/systemd/system/{APP}.service": "root:root 644",
        f"/etc/logrotate.d/{APP}": "root:root 644",
        RUN: f"{a}:{ag} 755",
    }


def assert_laid_out(site: Site, app_user: str, linked=NESTED) -> None:  # type: ignore[no-untyped-def]
    """Each path of the model has its owner and mode; the code side is the SSH user's all
    through; the app's runtime files and logs are the app user's; no older file is left."""
    want = owners(site, app_user, linked)
    found = site.sh("stat -c '%n %U:%G %a' " + " ".join(want))
    assert dict(line.split(" ", 1) for line in found.splitlines()) == want
    d = site.host.user
    assert site.sh(f"stat -c %U {ROOT}/revisions.log") == d
    odd = site.sh(f"find {ROOT}/releases {ROOT}/venvs \\( ! -user {d} -o ! -group {d} \\) -print")
    assert odd == "", odd
    assert site.sh(f"stat -c %U {RUN}/gunicorn.pid {ROOT}/shared/log/error.log") == f"{app_user}\n{app_user}"  # fmt: skip
    tops = sorted({"log", *(p.partition("/")[0] for paths in linked for p in paths)})
    assert site.sh(f"ls -A {ROOT}/shared").split() == tops  # no .env, pids, gunicorn.conf.py
    assert site.sh(f"ls -A {ETC}") == "env\ngunicorn.conf.py"
    for release in site.releases():
        assert site.sh(f"readlink {ROOT}/releases/{release}/.env") == f"{ETC}/env"
    unit = site.host.path(f"/etc/systemd/system/{APP}.service").read_text().splitlines()
    for line in (f"User={app_user}", f"EnvironmentFile=-{ETC}/env", f"PIDFile={RUN}/gunicorn.pid",
                 f"RuntimeDirectory={APP}", "RuntimeDirectoryMode=0755"):  # fmt: skip
        assert line in unit, unit
    master = site.master()
    users = site.sh(f"ps -o user= -p {master}; ps -o user= --ppid {master}").split()
    assert users == [app_user] * 3, users  # the master and its 2 workers


def test_setup_and_deploy_lay_out_every_path_and_the_app_cannot_write_its_code(
    make_hosts: HostFactory, tmp_path: Path
) -> None:
    host = make_hosts(1, release="bookworm")[0]
    site = Site(host, project(host, make_hosts.kit, tmp_path / "p"), fab_env(), make_hosts.kit, APP)  # fmt: skip
    site.app("1.0.0")
    setup = site.fab("setup")
    assert f"user {APP}: changed (the app's own; deploy deploys)" in setup.stdout
    assert "WARNING" not in setup.stdout + setup.stderr
    checked = site.fab("check")
    assert f"ok      app user: {APP}, a user of its own (deploy deploys)" in checked.stdout
    deployed = site.fab("deploy", "--skip-tests")
    assert "warning" not in deployed.stderr, deployed.stderr
    assert site.get("/")["version"] == "1.0.0"
    assert_laid_out(site, APP)
    release = f"{ROOT}/releases/{site.current()}"
    venv = f"{ROOT}/venvs/{site.venv_of(site.current())}"
    # the install step compiled the release as the deploy user: the app cannot
    assert site.sh(f"ls {release}/__pycache__").startswith("app.cpython-")

    # the app user reads its secrets and code, and writes its data and logs
    for allowed in (f"cat {ETC}/env {ETC}/gunicorn.conf.py {release}/app.py > /dev/null",
                    f"touch {ROOT}/shared/media/new {ROOT}/shared/instance/uploads/new",
                    f"echo row >> {ROOT}/shared/data/app.sqlite3", f"touch {ROOT}/shared/log/x.log",
                    f"ls {RUN}"):  # fmt: skip
        assert host.sh(allowed, user=APP, check=False).returncode == 0, allowed
    # and none of the rest
    before = site.sh(f"cd {ROOT} && ls -laR releases venvs current .incoming .switch revisions.log {ETC} | md5sum")  # fmt: skip
    refused = [
        f"touch {release}/app.py", f"touch {release}/new", f"touch {release}/__pycache__/new.pyc",
        f"rm -rf {release}/tests", f"touch {venv}/pyvenv.cfg", f"touch {venv}/new",
        f"mkdir {ROOT}/releases/new", f"touch {ROOT}/venvs/new",
        f"ln -sfn /tmp {ROOT}/current", f"rm -f {ROOT}/current", f"ln -sfn /tmp {ROOT}/.current.tmp",
        f"mkdir {ROOT}/.lock", f"echo x >> {ROOT}/revisions.log", f"touch {ROOT}/revisions.log",
        f"touch {ROOT}/shared/new", f"mv {ROOT}/shared/media {ROOT}/shared/m2",
        f"touch {ROOT}/.incoming/new",
        f"ls {ROOT}/.switch", f"touch {ETC}/env", f"touch {ETC}/gunicorn.conf.py",
        f"touch {ETC}/new", f"touch /etc/systemd/system/{APP}.service",
    ]  # fmt: skip
    done = [cmd for cmd in refused if host.sh(cmd, user=APP, check=False).returncode == 0]
    assert done == [], done
    assert site.sh(f"cd {ROOT} && ls -laR releases venvs current .incoming .switch revisions.log {ETC} | md5sum") == before  # fmt: skip
    # other users cannot look into the deploy root or read the secrets
    for cmd in (f"ls {ROOT}", f"cat {ETC}/env", f"ls {ROOT}/shared/log"):
        assert host.sh(cmd, user="nobody", check=False).returncode != 0, cmd

    # the app's logs and status are read as the app user; the next deploy and setup work
    logs = site.fab("logs", "-n", "5")
    assert "error.log <==" in logs.stdout, logs.stdout
    assert json.loads(site.fab("status", "--json").stdout)[0]["pid"] == site.master()
    site.app("1.1.0")
    site.fab("deploy", "--skip-tests")
    assert site.get("/")["version"] == "1.1.0"
    again = site.fab("setup")
    items = [line for line in again.stdout.splitlines() if re.match(r"^\[[^]]+\] [^ ].*: ", line)]
    assert items and all(re.search(r": no change( \(.*\))?$", i) for i in items), again.stdout
    assert_laid_out(site, APP)


def old_fabdeploy(where: Path) -> dict[str, str]:
    """The environment `fab` runs the fabdeploy of commit `OLD` in (its tasks/ from git)."""
    where.mkdir()
    tree = subprocess.run(
        ["git", "-C", str(REPO), "archive", OLD, "tasks"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=tree, check=True)
    return {**fab_env(), "PYTHONPATH": str(where)}


@pytest.mark.parametrize(
    ("old_user", "secrets_file", "linked"),
    [("", True, NESTED), ("web", False, FLAT)],
    ids=["ssh-user-ran-the-app", "web-ran-the-app-secrets-moved"],
)
def test_setup_migrates_a_host_deployed_before_the_model_keeping_every_byte(
    make_hosts: HostFactory, tmp_path: Path, old_user: str, secrets_file: bool, linked: tuple
) -> None:
    host = make_hosts(1, release="bookworm")[0]
    extra = f"APP_USER={old_user}\n" if old_user else ""
    folder = project(host, make_hosts.kit, tmp_path / "p", extra, linked)
    env_file = folder / "config" / "staging.env"
    old_site = Site(host, folder, old_fabdeploy(tmp_path / "old"), make_hosts.kit, old_user or host.user)  # fmt: skip
    old_site.app("1.0.0")
    old_site.fab("setup")
    old_site.fab("deploy", "--skip-tests")
    old_user = old_site.app_user
    assert old_site.sh(f"stat -c %U {ROOT}/shared/.env /proc/$(cat {ROOT}/shared/pids/gunicorn.pid)") == f"{old_user}\n{old_user}"  # fmt: skip
    # the app's data, written as the app ran then; a link it planted to a file of root's
    data = {"media/photo.jpg": "jpeg bytes\n", linked[1][0]: "SQLite format 3\0rows\n"}
    if "instance/uploads" in linked[0]:
        data["instance/uploads/report.pdf"] = "pdf bytes\n"
    for path, text in data.items():
        coded = base64.b64encode(text.encode()).decode()
        host.sh(f"echo {coded} | base64 -d > {ROOT}/shared/{path}", user=old_user)
    host.sh(f"ln -s /etc/shadow {ROOT}/shared/media/shadow", user=old_user)
    shadow = host.sh("stat -c '%U:%G %a' /etc/shadow").stdout
    secrets = host.sh(f"sha256sum < {ROOT}/shared/.env").stdout.split()[0]
    greeting = old_site.get("/greeting-sha256")["sha256"]
    served, master = old_site.current(), int(host.sh(f"cat {ROOT}/shared/pids/gunicorn.pid").stdout)
    logged = host.path(f"{ROOT}/shared/log/error.log").read_text()

    # the new fabdeploy: APP_USER unset (the app's own user), SECRETS_FILE kept or dropped
    keep = [line for line in env_file.read_text().splitlines() if not line.startswith("APP_USER=")]
    if not secrets_file:
        keep = [line for line in keep if not line.startswith("SECRETS_FILE=")]
        (folder / "app" / "secrets.env").unlink()
    env_file.write_text("\n".join(keep) + "\n")
    site = Site(host, folder, fab_env(), make_hosts.kit, APP)
    if old_user == host.user:  # a deploy first is refused, naming setup (nothing changes)
        refused = site.fab("deploy", "--skip-tests", ok=False)
        assert "set up by an older fabdeploy" in refused.stderr and "fab staging setup" in refused.stderr  # fmt: skip
        assert site.current() == served
    migrated = site.fab("setup")
    out = migrated.stdout
    print(out)  # what a migration says (shown with -s)
    assert "migrating to the ownership model" in out and f"stopping {APP}.service meanwhile" in out, out  # fmt: skip
    assert f"{ROOT}/shared/.env: the secrets move to {ETC}/env" in out, out
    assert f"started again on the new units: {APP}.service" in out, out
    assert "WARNING" not in out + migrated.stderr

    # serving the same release and secrets, restarted onto the new unit as the app's own user
    assert site.get("/")["version"] == "1.0.0" and site.current() == served
    assert site.get("/greeting-sha256")["sha256"] == greeting
    assert site.master() != master
    assert_laid_out(site, APP, linked)
    assert site.sh(f"sha256sum < {ETC}/env").split()[0] == secrets
    for path, text in data.items():  # every byte kept, now the app user's
        assert host.path(f"{ROOT}/shared/{path}").read_bytes() == text.encode(), path
    leaves = " ".join(f"{ROOT}/shared/{p}" for paths in linked for p in paths)
    assert site.sh(f"find {leaves} ! -user {APP}") == ""
    assert site.sh(f"stat -c '%U %N' {ROOT}/shared/media/shadow") == f"{APP} '{ROOT}/shared/media/shadow' -> '/etc/shadow'"  # fmt: skip
    assert host.sh("stat -c '%U:%G %a' /etc/shadow").stdout == shadow  # the link not followed
    assert host.path(f"{ROOT}/shared/log/error.log").read_text().startswith(logged)

    # a deploy on the migrated host, then setup finds nothing to do
    site.app("1.1.0")
    if not secrets_file:
        (folder / "app" / "secrets.env").unlink()
    site.fab("deploy", "--skip-tests")
    assert site.get("/")["version"] == "1.1.0"
    assert site.get("/greeting-sha256")["sha256"] == greeting
    again = site.fab("setup")
    assert "migrating" not in again.stdout and "changed" not in again.stdout.replace("no change", "")  # fmt: skip
    assert_laid_out(site, APP, linked)
