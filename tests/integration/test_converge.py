"""A deploy converges what setup owns (tasks/host/converge.py), on a real-systemd host
(Debian 12 and 13):
a changed secret and a new GUNICORN_CONFIG reach the web app and a companion process through
a plain ``fab deploy``, under a request loop with no failed request; a deploy of the same
revision with only the secrets changed is not a no-op; app settings (ENV_<NAME>) reach a host
set up before them with a settings-only deploy, in clear, and a USR2-handed-over master loses
a removed one; ``fab setup`` then ``deploy`` applies
what setup wrote; a switch that fails puts the old files back; a change the running service
would keep (BIND) stops the deploy before any host changes, naming the commands to run."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from tests.conftest import HostFactory, fab_env
from tests.integration.apps import write_app
from tests.integration.sandbox import MAX_EXPOSURE, confined, exposure, main_pid
from tests.integration.test_deploy import APP, PORT, ROOT, Site, write_project

#: Root's directory of the app's settings: the secrets and gunicorn.conf.py.
ETC = f"/etc/{APP}"

#: The companion process: writes the sha256 of the GREETING it was started with, then waits.
WATCH = textwrap.dedent(
    """\
    import hashlib, os, time
    seen = hashlib.sha256(os.environ.get("GREETING", "").encode()).hexdigest()
    with open("/srv/hello/shared/log/watch.tmp", "w") as handle:
        handle.write(seen)
    os.replace("/srv/hello/shared/log/watch.tmp", "/srv/hello/shared/log/watch.sha256")
    while True:
        time.sleep(60)
    """
)
#: The app's own gunicorn settings: leaves a mark (the pid of the master that read it).
OWN_CONFIG = textwrap.dedent(
    """\
    import os
    with open("/srv/hello/shared/log/own-config", "w") as handle:
        handle.write(str(os.getpid()))
    """
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def app(site: Site, version: str, greeting: str, **kw: object) -> None:
    """examples/app at ``version`` with the watch process and GREETING=``greeting``."""
    folder = site.project / "app"
    write_app(folder, version, **kw)  # type: ignore[arg-type]
    (folder / "watch.py").write_text(WATCH)
    (folder / "own_gunicorn.py").write_text(OWN_CONFIG)
    secrets(site, greeting)


def secrets(site: Site, greeting: str) -> None:
    (site.project / "app" / "secrets.env").write_text(f"GREETING={greeting}\nAPI_TOKEN=t1\n")


def settings(site: Site, **keys: str) -> None:
    """Set ``keys`` in the project's env file (replacing earlier values)."""
    path = site.project / "config" / "staging.env"
    lines = [line for line in path.read_text().splitlines() if line.split("=")[0] not in keys]
    path.write_text("\n".join([*lines, *(f"{k}={v}" for k, v in keys.items())]) + "\n")


def seen_env(site: Site) -> dict[str, str | None]:
    """SITE_ROOT and DEBUG as a worker of the app has them (None: unset)."""
    return site.get("/env?names=SITE_ROOT,DEBUG")["env"]  # type: ignore[return-value]


def before_settings(site: Site) -> None:
    """Make the host's unit and gunicorn.conf.py as a fabdeploy before app settings wrote
    them (no settings file named in either), and restart the web service on them."""
    unit = f"/etc/systemd/system/{APP}.service"
    conf = f"{ETC}/gunicorn.conf.py"
    site.sh(
        f"sed -i '/settings/d' {unit} && "
        f"sed -i \"s|_read_env('{ETC}/settings')|{{}}|\" {conf} && "
        f"systemctl daemon-reload && systemctl restart {APP}"
    )
    assert "settings" not in site.sh(f"cat {unit}") and "/settings'" not in site.sh(f"cat {conf}")
    site.wait_serving()


def seen_by_watch(site: Site) -> str:
    return site.sh(f"cat {ROOT}/shared/log/watch.sha256")


#: CI runs Debian 13 with an app user of its own ("web": what the app reads and writes goes
#: through sudo -u); ("bookworm", "deploy") adds the SSH user as app user (the opt-in).
CONVERGED = [("trixie", "web")]


@pytest.mark.parametrize(("release", "app_user"), CONVERGED)
def test_deploy_converges_secrets_gunicorn_config_and_processes(
    make_hosts: HostFactory, tmp_path: Path, release: str, app_user: str
) -> None:
    """A new secret, GUNICORN_CONFIG and process environment applied by a plain deploy, a
    secret-only change, setup then deploy, a failed switch restoring the files, a BIND change
    refused (``app_user`` "deploy": the SSH user runs the app)."""
    host = make_hosts(1, release=release)[0]
    project = tmp_path / "project"
    write_project(project, host, make_hosts.kit, app_user)
    site = Site(host, project, fab_env(), make_hosts.kit, app_user or APP)
    settings(site, PROCESS_WATCH="python watch.py")
    app(site, "1.0.0", "one")
    site.fab("setup")
    site.fab("deploy", "--skip-tests")
    assert site.get("/greeting-sha256")["sha256"] == sha("one")
    assert seen_by_watch(site) == sha("one")  # the watch process wrote shared/log in its sandbox
    for unit in (f"{APP}.service", f"{APP}-watch.service"):  # as systemd 257 applies them
        assert exposure(host, unit) <= MAX_EXPOSURE, site.sh(f"systemd-analyze security {unit}")
        writable = site.sh(f"systemctl show -p ReadWritePaths --value {unit}").split()
        confined(host, main_pid(host, unit), writable, [f"{ROOT}/current", ROOT, "/etc"])

    # a new GUNICORN_CONFIG and a changed secret: plan shows them, deploy applies them
    settings(site, GUNICORN_CONFIG="own_gunicorn.py")
    secrets(site, "two")
    planned = site.fab("plan").stdout
    assert "gunicorn.conf.py: deploy puts it in place with the switch" in planned, planned
    assert "+if 'own_gunicorn.py':" in planned, planned
    assert "secrets changed: deploy installs them with the switch" in planned, planned
    assert "two" not in planned  # names only, never values
    with site.loop() as loop:
        done = site.fab("deploy", "--skip-tests")
    loop.report("deploy converging GUNICORN_CONFIG and a secret")
    assert loop.failures == [] and loop.ok > 20, done.stdout
    assert "setup's files: gunicorn.conf.py, the secrets: the switch applies them" in done.stdout
    assert site.get("/greeting-sha256")["sha256"] == sha("two")
    assert site.sh(f"cat {ROOT}/shared/log/own-config") == str(site.master())
    assert seen_by_watch(site) == sha("two")  # the companion process restarted onto them
    group = site.sh(f"id -gn {site.app_user}")  # root's, readable by the app's group only
    assert site.sh(f"stat -c '%U %G %a' {ETC}/env {ETC}/gunicorn.conf.py") == f"root {group} 640\nroot {group} 640"  # fmt: skip
    assert site.sh(f"ls -a {ETC} | grep -c fabdeploy || true") == "0"  # no copies left
    assert site.sh("ls -d ~deploy/.fabdeploy-stage.* 2>/dev/null | wc -l") == "0"

    # nothing changed: a no-op (no file is taken for stale)
    same = site.fab("deploy", "--skip-tests")
    assert "no change: every host already serves revision" in same.stdout, same.stdout

    # app settings (ENV_<NAME>) on a host set up before they existed (a unit and a
    # gunicorn.conf.py that name no settings file, a master systemd started so): only the
    # settings changed, no `fab setup`: shown in clear, installed, given to the app, gracefully
    before_settings(site)
    settings(site, ENV_SITE_ROOT="https://one.example", ENV_DEBUG="0")  # (plan's line: unit-tested)
    with site.loop() as loop:
        done = site.fab("deploy", "--skip-tests")
    loop.report("same revision, settings given to a host set up before them")
    told = "the settings (SITE_ROOT=https://one.example, DEBUG=0)"
    assert loop.failures == [] and told in done.stdout, done.stdout
    assert seen_env(site) == {"SITE_ROOT": "https://one.example", "DEBUG": "0"}
    assert site.sh(f"stat -c '%U %G %a' {ETC}/settings") == f"root {group} 640"
    ran = site.fab("exec", 'echo "settings: $SITE_ROOT $DEBUG"').stdout
    assert "settings: https://one.example 0" in ran, ran  # in clear, never masked
    shown = site.fab("status").stdout  # what the host holds, read back by status.sh
    assert f"settings {site.host.address}: DEBUG=0 SITE_ROOT=https://one.example" in shown, shown
    watch = site.sh(f"systemctl show -p MainPID --value {APP}-watch")
    assert "DEBUG=0" in site.sh(f"tr '\\0' '\\n' < /proc/{watch}/environ")  # its unit's
    # a master systemd starts reads them from the unit's EnvironmentFile=; one setting changed
    # and one removed: a USR2 re-exec hands its new master neither the old value nor the
    # removed one (it inherits what systemd gave the first), and so does the next re-exec
    site.fab("run.restart")
    assert seen_env(site)["SITE_ROOT"] == "https://one.example"
    env_file = site.project / "config" / "staging.env"
    kept = [line for line in env_file.read_text().splitlines() if not line.startswith("ENV_SITE_ROOT=")]  # fmt: skip
    env_file.write_text("\n".join(kept) + "\n")
    settings(site, ENV_DEBUG="1")
    master = site.master()
    again = site.fab("deploy", "--skip-tests")
    assert "the settings (DEBUG: 0 -> 1, SITE_ROOT removed)" in again.stdout, again.stdout
    assert site.master() != master  # a USR2 handover, not a restart
    assert seen_env(site) == {"SITE_ROOT": None, "DEBUG": "1"}

    # only the secrets changed, the same revision: deployed again, gracefully
    secrets(site, "three")
    with site.loop() as loop:
        again = site.fab("deploy", "--skip-tests")
    loop.report("same revision, only a secret changed")
    assert loop.failures == [] and "setup's files changed on" in again.stdout, again.stdout
    assert site.get("/greeting-sha256")["sha256"] == sha("three")
    assert seen_by_watch(site) == sha("three")
    assert seen_env(site)["SITE_ROOT"] is None  # a second re-exec: still gone

    # `fab setup` writes the secrets; the next deploy finds the processes on older files
    secrets(site, "four")
    site.fab("setup")
    assert site.get("/greeting-sha256")["sha256"] == sha("three")  # setup alone: not applied
    plan = site.fab("plan").stdout
    assert "web started before its files changed" in plan, plan
    with site.loop() as loop:
        site.fab("deploy", "--skip-tests")
    loop.report("deploy after setup changed the secrets")
    assert loop.failures == []
    assert site.get("/greeting-sha256")["sha256"] == sha("four")
    assert seen_by_watch(site) == sha("four")

    # a switch that fails puts the old secrets back with the old release
    served, conf = site.current(), site.sh(f"cat {ETC}/gunicorn.conf.py")
    app(site, "1.1.0", "five", broken="switch")
    with site.loop() as loop:
        failed = site.fab("deploy", "--skip-tests", ok=False)
    loop.report("a failed switch with changed secrets")
    assert "back as they were" in failed.stdout + failed.stderr, failed.stdout + failed.stderr
    assert site.current() == served and site.get("/")["version"] == "1.0.0"
    assert site.get("/greeting-sha256")["sha256"] == sha("four")
    assert site.sh(f"cat {ETC}/gunicorn.conf.py") == conf
    assert site.sh(f"sha256sum < {ETC}/env | cut -c1-64", user=site.app_user) != ""  # its group's
    assert site.sh(f"grep -c five {ETC}/env || true") == "0"

    # what the running service keeps until it restarts: refused, nothing changed
    app(site, "1.2.0", "four")
    settings(site, BIND="0.0.0.0:8001")
    before, releases = site.sh(f"cat {ETC}/gunicorn.conf.py"), site.releases()
    planned = site.fab("plan").stdout
    assert "deploy would stop here, changing no host: " in planned, planned
    refused = site.fab("deploy", "--skip-tests", ok=False)
    message = refused.stdout + refused.stderr
    assert "bind = '0.0.0.0:8001'" in message and "changed nothing" in message, message
    assert "`fab staging setup`, then `fab staging run.restart --process all`" in message
    assert site.current() == served and site.get("/")["version"] == "1.0.0"
    assert site.sh(f"cat {ETC}/gunicorn.conf.py") == before
    assert site.releases() == releases and seen_by_watch(site) == sha("four")
    assert site.sh(f"systemctl is-active {APP}-watch") == "active"

    # the sandbox too: a new linked directory is a new writable path, which only a restart
    # gives the running service (a USR2 re-exec keeps the master's namespaces)
    settings(site, BIND=f"0.0.0.0:{PORT}", LINKED_DIRS="uploads")
    refused = site.fab("deploy", "--skip-tests", ok=False)
    message = refused.stdout + refused.stderr
    assert f"`ReadWritePaths={ROOT}/shared/uploads " in message and "changed nothing" in message
    assert site.current() == served and site.get("/")["version"] == "1.0.0"
    site.fab("setup")  # makes shared/uploads and writes the units
    site.fab("run.restart", "--process", "all")
    uploads = f"{ROOT}/shared/uploads"
    for unit in (f"{APP}.service", f"{APP}-watch.service"):
        confined(host, main_pid(host, unit), [uploads], [f"{ROOT}/current"])
    site.fab("deploy", "--skip-tests")  # in step now: deployed
    assert site.get("/")["version"] == "1.2.0"
