"""The narrow sudoers rule (docs/security.md#sudo) on a fresh real-systemd host (Debian 12).

The kit's SSH user ``deploy`` has ``ALL=(ALL:ALL) NOPASSWD:ALL`` in
/etc/sudoers.d/fabdeploy-deploy; the test replaces that file, as root, with exactly what
``fab staging setup.sudoers`` printed (checked by ``visudo -cf``), so ``sudo -n true`` is
refused from then on. Beside it goes one harness line, ``Defaults:deploy !authenticate``: it
grants nothing (deploy has no rule that asks for a password), but it makes sudo log every
command it refuses as "command not allowed" with its command line (with ``-n`` a refused
command is otherwise not logged at all), so that the test can assert that nothing fabdeploy ran
as root was refused, even where a script goes on after a failure (``|| true``).

With that rule alone: setup (the app user, the directories, linked paths, secrets, the units
of the web service and a companion process), check, a first deploy, a second one that puts
changed setup files in place (the secrets and the companion's unit) and cleans up with
KEEP_RELEASES reached, run.reload, run.restart of the companion, rollback, exec, logs, status,
health, a third deploy that removes a release, and a second setup with nothing to change. Then
one right is removed: ``fab check`` names it, with the line to add, ``fab plan`` says the
deploy would stop, and a deploy is refused at its check step, nothing changed. On a failure,
the host's sudo journal is printed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.test_deploy import APP, ROOT, Site, fresh_site

#: The file of the kit that gives deploy every right, replaced by the printed rule.
RULE = "/etc/sudoers.d/fabdeploy-deploy"
#: The harness's line: refused commands logged (see the module doc); grants nothing.
LOGGED = "/etc/sudoers.d/zz-log-refusals"
WORKER = f"{APP}-worker.service"
#: The companion process: sleeps (its unit is written, enabled, restarted and read).
WORKER_PY = "import time\nwhile True:\n    time.sleep(60)\n"


def settings(site: Site, **keys: str) -> None:
    """Set ``keys`` in the project's env file (replacing earlier values)."""
    path = site.project / "config" / "staging.env"
    lines = [line for line in path.read_text().splitlines() if line.split("=")[0] not in keys]
    path.write_text("\n".join([*lines, *(f"{k}={v}" for k, v in keys.items())]) + "\n")


def app(site: Site, version: str, greeting: str) -> None:
    """examples/app at ``version``, with the worker and GREETING=``greeting``."""
    site.app(version)
    (site.project / "app" / "worker.py").write_text(WORKER_PY)
    (site.project / "app" / "secrets.env").write_text(f"GREETING={greeting}\nAPI_TOKEN=t1\n")


def sudo_journal(site: Site) -> str:
    """What sudo logged on the host (every command it ran or refused)."""
    return site.sh("journalctl -t sudo --no-pager -o short-precise || true")


def refused(site: Site) -> list[str]:
    """The commands sudo refused deploy (the harness's ``!authenticate`` logs them), but the
    test's own ``sudo -n true``."""
    lines = sudo_journal(site).splitlines()
    return [s for s in lines if "command not allowed" in s and not s.endswith("COMMAND=/usr/bin/true")]  # fmt: skip


def fab(site: Site, *args: str, ok: bool = True) -> str:
    """``fab staging ARGS``; its output. A failure shows the host's sudo journal too, so that
    a missing right is plain."""
    try:
        done = site.fab(*args, ok=ok)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- journalctl -t sudo:\n{sudo_journal(site)}") from None
    return done.stdout + done.stderr


def install_rule(site: Site, text: str) -> None:
    """Replace the kit's rule with ``text`` (visudo -cf first), and add the harness's line."""
    body = "\n".join(
        [
            f"cat > /root/rule <<'RULE_EOF'\n{text}RULE_EOF",
            "visudo -cf /root/rule",
            f"install -m 0440 -o root -g root /root/rule {RULE}",
            f"printf 'Defaults:deploy !authenticate\\n' > {LOGGED}",
            f"chmod 0440 {LOGGED}",
            "visudo -c",
            "rm /root/rule",
        ]
    )
    site.sh(body)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A fresh Debian 12 host whose deploy user has only the rule `fab setup.sudoers` printed,
    and a project with a companion process, linked paths and KEEP_RELEASES=2."""
    with fresh_site(tmp_path_factory, "sudoers") as site:
        settings(
            site,
            PROCESS_WORKER="python worker.py",
            LINKED_DIRS="media",
            LINKED_FILES="data/app.sqlite3",
            KEEP_RELEASES="2",
            TEST_COMMAND="",
        )
        app(site, "1.0.0", "one")
        yield site


def test_the_printed_rule_replaces_every_other_right(site: Site) -> None:
    rule = site.fab("setup.sudoers").stdout  # the file alone on stdout
    assert rule.startswith("# /etc/sudoers.d/fabdeploy-hello: ")
    assert "Cmnd_Alias HELLO_DEPLOY = \\\n" in rule and "Cmnd_Alias HELLO_SETUP = \\\n" in rule
    assert rule.endswith(
        "deploy ALL=(root) NOPASSWD: HELLO_DEPLOY, HELLO_SETUP\ndeploy ALL=(hello) NOPASSWD: ALL\n"
    )
    print(rule)  # the generated file, in the test's output
    install_rule(site, rule)
    assert site.sh(f"cat {RULE}") + "\n" == rule
    as_deploy = site.host.sh("sudo -n true", user="deploy", check=False)
    assert as_deploy.returncode == 1, as_deploy  # no longer root at will
    assert "COMMAND=/usr/bin/true" in sudo_journal(site)  # and a refusal is logged
    assert "ALL=(ALL" not in site.sh("cat /etc/sudoers.d/*")


def test_setup_check_and_a_first_deploy_with_the_rule_alone(site: Site) -> None:
    setup = fab(site, "setup")
    assert f"user {APP}: changed" in setup and "directories: changed" in setup, setup
    assert "linked paths in shared/: changed (made shared/media/ shared/data/app.sqlite3)" in setup
    assert f"/etc/systemd/system/{WORKER}: changed" in setup, setup
    checked = fab(site, "check")
    assert f"ok      sudo: deploy runs as root what a deploy needs, and acts as {APP}" in checked
    assert "BLOCKS" not in checked and "WARNING sudo" not in checked, checked
    deployed = fab(site, "deploy", "--skip-tests")
    assert site.get("/")["version"] == "1.0.0", deployed
    assert site.sh(f"systemctl is-active {APP} {WORKER}") == "active\nactive"
    assert site.sh(f"stat -c %U {ROOT}/shared/media {ROOT}/shared/data/app.sqlite3") == f"{APP}\n{APP}"  # fmt: skip
    assert refused(site) == []


def test_a_second_deploy_puts_changed_setup_files_in_place_and_cleans_up(site: Site) -> None:
    app(site, "2.0.0", "two")  # the secrets change
    settings(site, STOP_TIMEOUT="20")  # the companion's unit changes (TimeoutStopSec=)
    deployed = fab(site, "deploy", "--skip-tests")
    assert f"setup's files: {WORKER}, the secrets: the switch applies them" in deployed, deployed
    assert "cleanup: kept 2 release(s), removed 0" in deployed, deployed
    assert site.get("/")["version"] == "2.0.0"
    assert "TimeoutStopSec=20" in site.sh(f"cat /etc/systemd/system/{WORKER}")
    assert site.sh(f"grep -c two /etc/{APP}/env") == "1"
    assert site.sh(f"ls -a /etc/{APP} /etc/systemd/system | grep -c fabdeploy || true") == "0"
    assert len(site.releases()) == 2
    assert refused(site) == []


def test_reload_restart_rollback_exec_logs_status_and_health(site: Site) -> None:
    fab(site, "run.reload")
    assert site.get("/")["version"] == "2.0.0"
    fab(site, "run.restart", "--process", "worker")
    assert site.sh(f"systemctl is-active {WORKER}") == "active"
    rolled = fab(site, "rollback")
    assert site.get("/")["version"] == "1.0.0", rolled
    ran = fab(site, "exec", "id -un")
    assert f"[{site.host.address}] {APP}" in ran, ran
    logs = fab(site, "logs", "-n", "20")
    assert f"==> journal of {APP}.service {WORKER} <==" in logs, logs
    assert "journal unavailable" not in logs and "error.log <==" in logs, logs
    status = fab(site, "status")
    assert "active" in status and "200" in status, status
    assert "healthy: HTTP 200" in fab(site, "health")
    assert refused(site) == []


def test_a_third_deploy_removes_a_release_and_setup_has_nothing_to_change(site: Site) -> None:
    app(site, "3.0.0", "two")
    before = site.releases()
    deployed = fab(site, "deploy", "--skip-tests")
    assert site.get("/")["version"] == "3.0.0"
    after = site.releases()
    assert len(after) == 2 and set(before) - set(after), (before, after, deployed)
    again = fab(site, "setup")
    assert ": changed" not in again, again
    assert refused(site) == []


def test_check_and_deploy_name_a_right_the_rule_lacks(site: Site) -> None:
    line = f"/usr/bin/systemctl restart -- {WORKER}"
    text = site.sh(f"cat {RULE}") + "\n"
    assert f"    {line}, \\\n" in text  # in the middle of HELLO_DEPLOY
    install_rule(site, text.replace(f"    {line}, \\\n", ""))
    assert line not in site.sh(f"cat {RULE}")
    checked = fab(site, "check", ok=False)
    assert (
        f"BLOCKS  sudo: deploy may not run as root with sudo -n: `{line}` (HELLO_DEPLOY): add it "
        "to /etc/sudoers.d/fabdeploy-hello (`fab staging setup.sudoers` prints the file; "
        "docs/security.md#sudo)"
    ) in checked, checked
    served, releases = site.current(), site.releases()
    app(site, "4.0.0", "two")
    planned = fab(site, "plan")
    assert f"deploy would stop here, changing no host: deploy may not run as root with sudo -n: `{line}`" in planned, planned  # fmt: skip
    refusal = fab(site, "deploy", "--skip-tests", ok=False)
    assert f"`{line}` (HELLO_DEPLOY)" in refusal, refusal
    assert site.current() == served and site.releases() == releases
    assert site.get("/")["version"] == "3.0.0"
    assert refused(site) == []  # asked with sudo -l, never run


def test_a_rule_printed_before_app_settings_keeps_working_until_the_app_has_some(
    site: Site,
) -> None:
    """A host whose rule predates the settings file (its lines left out): an app without
    ENV_ keys deploys as before; with one, the deploy stops at its check naming the lines."""
    printed = site.fab("setup.sudoers").stdout
    mine = f"/etc/{APP}/settings"
    lines = printed.splitlines()
    kept = [line for line in lines if mine not in line]
    assert len(lines) - len(kept) >= 6, printed  # read, and put in place by a deploy
    install_rule(site, "\n".join(kept) + "\n")
    app(site, "5.0.0", "two")
    deployed = fab(site, "deploy", "--skip-tests")
    assert site.get("/")["version"] == "5.0.0", deployed
    # what sudo refused: only the settings file's reads (a host without them: no file)
    assert [line for line in refused(site) if mine not in line] == []
    settings(site, ENV_DEBUG="1")
    served = site.current()
    refusal = fab(site, "deploy", "--skip-tests", ok=False)
    assert f"`/usr/bin/cat -- {mine}` (HELLO_DEPLOY)" in refusal, refusal
    assert f"{mine}.fabdeploy-new` (HELLO_SETUP)" in refusal, refusal
    assert site.current() == served and site.get("/")["version"] == "5.0.0"
