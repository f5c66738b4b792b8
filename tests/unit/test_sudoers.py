"""The sudo rights (tasks/host/sudoers.py): the rule `fab setup.sudoers` prints, what `fab
check` and the deploy's check step make of sudo's answers, and the remote scripts run under a
sudo that refuses any root command the declaration lacks (tests/unit/strict_sudo.py)."""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks import config
from tasks.core import shell
from tasks.core.paths import layout
from tasks.host import converge, facts, linked, logs, provision, sudoers
from tasks.steps import checks
from tests.unit.fake_tags import SERVER_313
from tests.unit.strict_sudo import Sudo, pattern

ROOT = os.geteuid() == 0
#: Tests whose scripts give files to the app user: only root can (elsewhere they are skipped).
needs_root = pytest.mark.skipif(not ROOT, reason="install -o/chown to another user needs root")

#: The settings docs/security.md#sudo shows the rule of.
EXAMPLE = (
    "APP_NAME=hello\nHOSTS=deploy@web1\nPROCESS_WORKER=celery -A hello worker\n"
    "LINKED_DIRS=media\nLINKED_FILES=data/app.sqlite3\n"
)


def settings(tmp_path: Path, text: str = EXAMPLE) -> config.Settings:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text(text)
    return config.build("staging", tmp_path)


def host(conf: config.Settings, user: str = "deploy", name: str = "web1") -> SimpleNamespace:
    """A `Host` stand-in: what sudoers, facts and the checks read of one."""
    return SimpleNamespace(
        settings=conf,
        name=name,
        conn=SimpleNamespace(user=user),
        app_user=conf.app_user,
        app_is_deploy_user=conf.app_user == user,
    )


# --- the rule ----------------------------------------------------------------------------------


def documented_rule() -> str:
    """The generated file docs/security.md#sudo shows."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    found = re.search(r"```\n(# /etc/sudoers\.d/fabdeploy-hello: .*?)```\n", page, re.DOTALL)
    assert found, "docs/security.md shows no generated rule"
    return found.group(1)


def test_the_docs_show_the_rule_setup_sudoers_prints_for_the_example(tmp_path: Path) -> None:
    assert sudoers.render(settings(tmp_path), ["deploy"]) == documented_rule()


def test_the_rule_splits_the_day_to_day_rights_from_setup_s(tmp_path: Path) -> None:
    text = sudoers.render(settings(tmp_path), ["deploy"])
    day, setup = text.split("Cmnd_Alias HELLO_DEPLOY = \\\n")[1].split("Cmnd_Alias HELLO_SETUP")
    day_lines = [line.strip().rstrip(", \\") for line in day.strip().splitlines()]
    assert day_lines[:7] == [
        "/usr/bin/stat -c %U\\:%G\\:%a\\:%Y -- /etc/hello/gunicorn.conf.py",
        "/usr/bin/cat -- /etc/hello/gunicorn.conf.py",
        "/usr/bin/stat -c %U\\:%G\\:%a\\:%Y -- /etc/hello/settings",
        "/usr/bin/cat -- /etc/hello/settings",
        "/usr/bin/stat -c %U\\:%G\\:%a\\:%Y -- /etc/hello/env",
        "/usr/bin/sha256sum -- /etc/hello/env",
        "/usr/bin/cut -s -d\\= -f1 -- /etc/hello/env",
    ]
    assert "/usr/bin/systemctl restart -- hello-worker.service" in day_lines
    assert (
        "/usr/bin/journalctl -u hello.service -u hello-worker.service -n [0-9][0-9][0-9] -f "
        "--no-pager"
    ) in day_lines
    assert "/usr/bin/ss -Hltnp ( sport \\= \\:8000 )" in day_lines
    # nothing that writes as root is a day-to-day right
    assert not [line for line in day_lines if re.match(r"/usr/bin/(install|mv|cp|rm|chown|chmod|mkdir) ", line)]  # fmt: skip
    assert "/usr/sbin/useradd --system --user-group --home-dir /srv/hello --no-create-home --shell /usr/sbin/nologin hello" in setup  # fmt: skip
    assert "/usr/bin/install -m 640 -o root -g hello -- /dev/stdin /etc/hello/env.fabdeploy-new" in setup  # fmt: skip
    assert "/usr/bin/install -m 640 -o root -g hello -- /dev/stdin /etc/hello/settings.fabdeploy-new" in setup  # fmt: skip
    assert "/usr/bin/chown -h deploy\\: -- /srv/hello/shared/data" in setup  # above a nested one
    assert "/usr/bin/systemctl daemon-reload" in setup
    assert text.endswith(
        "\ndeploy ALL=(root) NOPASSWD: HELLO_DEPLOY, HELLO_SETUP\ndeploy ALL=(hello) NOPASSWD: ALL\n"
    )


def test_every_line_is_there_once_and_wildcards_only_where_values_vary(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    found = sudoers.rights(conf, "deploy", "hello")
    lines = [right.line() for right in found]
    assert len(lines) == len(set(lines))
    globbed = [line for line in lines if re.search(r"(?<!\\)[\[*?]", line)]
    assert globbed and all("/usr/bin/journalctl " in line for line in globbed), globbed
    assert all(right.command in sudoers.PATHS for right in found)


def test_a_word_is_matched_literally_and_one_sudo_cannot_spell_is_refused() -> None:
    assert sudoers.sudoers_word("/srv/a=b,c:d#e") == "/srv/a\\=b\\,c\\:d\\#e"
    assert sudoers.sudoers_word("x*y?[z]") == "x\\*y\\?\\[z\\]"
    assert sudoers.sudoers_word("( sport = :80 )") == "( sport \\= \\:80 )"
    assert sudoers.sudoers_word(sudoers.Glob("[0-9]", "5")) == "[0-9]"
    for bad in ("", "a\\b", 'a"b', "a  b", " a", "a\tb", "a\nb"):
        with pytest.raises(ValueError):
            sudoers.sudoers_word(bad)


def test_the_app_running_as_the_ssh_user_needs_no_rule_of_its_own(tmp_path: Path) -> None:
    conf = settings(tmp_path, "APP_NAME=shop-2\nAPP_USER=deploy\nHOSTS=deploy@web1\n")
    text = sudoers.render(conf, ["deploy"])
    assert "Cmnd_Alias SHOP_2_DEPLOY = " in text and "Cmnd_Alias SHOP_2_SETUP = " in text
    assert "useradd" not in text and "ALL=(deploy)" not in text
    assert text.endswith("deploy ALL=(root) NOPASSWD: SHOP_2_DEPLOY, SHOP_2_SETUP\n")
    assert "/etc/sudoers.d/fabdeploy-shop-2" in text


def test_visudo_accepts_the_rule(tmp_path: Path) -> None:
    visudo = shutil.which("visudo") or ("/usr/sbin/visudo" if Path("/usr/sbin/visudo").exists() else None)  # fmt: skip
    if not visudo:
        pytest.skip("no visudo here (the integration test checks the rule with it on Debian)")
    rule = tmp_path / "rule"
    rule.write_text(sudoers.render(settings(tmp_path), ["deploy", "ci"]))
    done = subprocess.run([visudo, "-cf", str(rule)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# --- what a command's check makes of sudo's answers ---------------------------------------------


def test_the_probes_follow_what_the_host_runs(tmp_path: Path) -> None:
    conf = settings(
        tmp_path,
        "APP_NAME=hello\nHOSTS=deploy@web1,deploy@jobs1\nPROCESS_WORKER=celery -A hello worker\n"
        "ROLE_WEB=deploy@web1\nROLE_WORKER=deploy@jobs1\n",
    )
    web = [right.line() for right in sudoers.probes(host(conf))]
    jobs = [right.line() for right in sudoers.probes(host(conf, name="jobs1"))]
    assert "/usr/bin/systemctl start -- hello.service" in web
    assert not any("hello-worker.service" in line for line in web), web
    assert "/usr/bin/systemctl restart -- hello-worker.service" in jobs
    assert "/usr/bin/systemctl start -- hello.service" not in jobs
    assert all(right.use in (*sudoers.NEEDS["check"], sudoers.CONVERGE) for right in sudoers.probes(host(conf)))  # fmt: skip
    env = sudoers.probe_env(host(conf))
    assert env["SUDO_AS"] == "hello"
    assert "stat\t-c\t%U:%G:%a:%Y\t--\t/etc/hello/gunicorn.conf.py" in str(env["SUDO_PROBES"])
    assert "install\t-m\t640\t-o\troot\t-g\t@APP_GROUP@\t--" in str(env["SUDO_PROBES"])


def test_missing_keeps_what_the_command_needs(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    web = host(conf)
    asked = sudoers.probes(web)
    index = {right.line(): i for i, right in enumerate(asked)}
    restart = index["/usr/bin/systemctl restart -- hello-worker.service"]
    port = index["/usr/bin/ss -Hltnp ( sport \\= \\:8000 )"]
    env_new = index[f"/usr/bin/mv -fT -- /etc/hello/env{sudoers.NEW} /etc/hello/env"]
    refused = (restart, port, env_new)
    assert [r.line() for r in sudoers.missing(web, refused, "check")] == [asked[restart].line(), asked[port].line()]  # fmt: skip
    assert sudoers.missing(web, refused, "deploy") == [asked[restart]]
    assert sudoers.missing(web, refused, "deploy", ("/etc/hello/env",)) == [asked[restart], asked[env_new]]  # fmt: skip
    assert sudoers.missing(web, refused, "release") == []
    assert sudoers.missing(web, refused, "converge") == [asked[env_new]]


def test_a_refusal_names_the_line_its_alias_and_the_file(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    web = host(conf)
    asked = sudoers.probes(web)
    [install] = [r for r in asked if r.line().endswith("gunicorn.conf.py.fabdeploy-new")]
    assert sudoers.refusal(web, [install], "www") == (  # type: ignore[arg-type]
        "deploy may not run as root with sudo -n: `/usr/bin/install -m 640 -o root -g www -- "
        "/dev/stdin /etc/hello/gunicorn.conf.py.fabdeploy-new` (HELLO_SETUP): add it to "
        "/etc/sudoers.d/fabdeploy-hello (`fab staging setup.sudoers` prints the file; "
        "docs/security.md#sudo)"
    )
    many = sudoers.refusal(web, asked[:5], "hello")  # type: ignore[arg-type]
    assert many.count("(HELLO_DEPLOY)") == 3 and " and 2 more: add them to " in many
    assert sudoers.app_refused(web).startswith(  # type: ignore[arg-type]
        "deploy may not act as the app user hello with sudo -n: add `deploy ALL=(hello) NOPASSWD: ALL`"
    )


def answer(*lines: str) -> str:
    """facts.sh's answer with ``lines`` among its key=value lines."""
    head = f"Python 3.11.2 (main)\n[GCC]\n3.11\ntags={SERVER_313.to_json()}\n"
    return head + "".join(f"{line}\n" for line in lines)


def test_facts_carry_what_sudo_refused(tmp_path: Path) -> None:
    web = host(settings(tmp_path))
    found = facts.parse_facts(web, answer("app_group=hello", "sudo_missing=3", "sudo_missing=12"))  # type: ignore[arg-type]
    assert found.sudo_missing == (3, 12) and found.app_group == "hello"
    assert not found.sudo_as_refused
    assert facts.parse_facts(web, answer("sudo_as=refused")).sudo_as_refused  # type: ignore[arg-type]


def test_fab_check_names_each_missing_right_and_warns_for_setup_s_files(tmp_path: Path) -> None:
    web = host(settings(tmp_path))
    asked = sudoers.probes(web)
    start = next(i for i, r in enumerate(asked) if r.line() == "/usr/bin/systemctl start -- hello.service")  # fmt: skip
    cp = next(i for i, r in enumerate(asked) if r.line().startswith("/usr/bin/cp -p -- /etc/hello/env "))  # fmt: skip
    found = facts.parse_facts(web, answer("app_group=hello", f"sudo_missing={start}"))  # type: ignore[arg-type]
    [blocked] = checks.sudo_findings(web, found)  # type: ignore[arg-type]
    assert blocked.line() == (
        "BLOCKS  sudo: deploy may not run as root with sudo -n: `/usr/bin/systemctl start -- "
        "hello.service` (HELLO_DEPLOY): add it to /etc/sudoers.d/fabdeploy-hello (`fab staging "
        "setup.sudoers` prints the file; docs/security.md#sudo)"
    )
    fine, warned = checks.sudo_findings(web, facts.parse_facts(web, answer(f"sudo_missing={cp}")))  # type: ignore[arg-type]
    assert fine.line() == "ok      sudo: deploy runs as root what a deploy needs, and acts as hello"
    assert warned.warning and warned.line().startswith(
        "WARNING sudo: a deploy that changes setup's files needs deploy to run as root, which "
        "sudo -n refuses: `/usr/bin/cp -p -- /etc/hello/env /etc/hello/env.fabdeploy-old` (HELLO_SETUP)"
    )
    [app] = checks.sudo_findings(web, facts.parse_facts(web, answer("sudo_as=refused")))  # type: ignore[arg-type]
    assert not app.ok and "add `deploy ALL=(hello) NOPASSWD: ALL`" in app.detail


def test_the_deploy_s_check_step_refuses_what_it_needs_and_only_that(tmp_path: Path) -> None:
    web = host(settings(tmp_path))
    asked = sudoers.probes(web)
    port = next(i for i, r in enumerate(asked) if r.use == sudoers.PORT)
    conf_new = next(i for i, r in enumerate(asked) if r.line().endswith("gunicorn.conf.py.fabdeploy-new"))  # fmt: skip
    found = facts.parse_facts(web, answer(f"sudo_missing={port}", f"sudo_missing={conf_new}"))  # type: ignore[arg-type]
    assert sudoers.refused_for(web, found, "deploy", ()) == ""  # type: ignore[arg-type]
    assert sudoers.refused_for(web, found, "rollback", ()) == ""  # type: ignore[arg-type]
    said = sudoers.refused_for(web, found, "deploy", ("/etc/hello/gunicorn.conf.py",))  # type: ignore[arg-type]
    assert said.startswith("deploy may not run as root with sudo -n: `/usr/bin/install -m 640 ")


# --- the scripts under a sudo that allows the declared rights only ----------------------------


@pytest.fixture
def example(tmp_path: Path, host_dirs: Path) -> config.Settings:
    """The example's settings with the deploy root under tmp_path (and /etc/<app>, /run/<app>:
    `host_dirs`); the app user is `nobody`, whom root can give files."""
    return settings(
        tmp_path,
        EXAMPLE + f"DEPLOY_ROOT={tmp_path / 'srv'}\nAPP_USER=nobody\n",
    )


def group_of(user: str) -> str:
    return subprocess.run(["id", "-gn", user], capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip


def strict(tmp_path: Path, conf: config.Settings) -> Sudo:
    """The strict sudo allowing the rights of this user (the SSH user here) and the app's."""
    return Sudo.make(tmp_path, sudoers.rights(conf, getpass.getuser(), group_of(conf.app_user)))


def assert_declared(sudo: Sudo, done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    assert sudo.refused() == [], sudo.refused()


@needs_root
def test_setup_s_directories_and_linked_paths_run_declared_commands(tmp_path: Path, example: config.Settings) -> None:  # fmt: skip
    sudo = strict(tmp_path, example)
    web = host(example, user=getpass.getuser())
    group = group_of("nobody")
    Path(example.deploy_root).parent.mkdir(parents=True, exist_ok=True)
    done = sudo.run("setup-directories", provision._layout_env(web, group, "apply"))  # type: ignore[arg-type]
    assert_declared(sudo, done)
    assert done.stdout.startswith("changed"), done.stdout
    done = sudo.run("linked_paths", linked._env(web, ""))  # type: ignore[arg-type]
    assert_declared(sudo, done)
    assert done.stdout.strip() == "made shared/media/ shared/data/app.sqlite3"
    # an older layout: each path handed over (chown USER:, links never followed)
    paths = layout(example)
    for path in (paths.releases, f"{paths.shared}/data"):  # the deploy user's: given to nobody
        os.chown(path, 65534, 65534)
    for path in (paths.logs, f"{paths.shared}/media"):  # the app user's: given to root
        os.chown(path, 0, 0)
    done = sudo.run("setup-directories", provision._layout_env(web, group, "apply"))  # type: ignore[arg-type]
    assert_declared(sudo, done)
    handed = [line.split(" -- ")[1] for line in sudo.as_root() if line.startswith("chown ")]
    assert sorted(handed) == sorted([paths.releases, paths.logs, f"{paths.shared}/data", f"{paths.shared}/media"]), handed  # fmt: skip


@needs_root
def test_setup_s_files_and_secrets_run_declared_commands(tmp_path: Path, example: config.Settings) -> None:  # fmt: skip
    sudo = strict(tmp_path, example)
    paths, group = layout(example), group_of("nobody")
    Path(paths.etc).mkdir(parents=True)
    write = {"DEST": paths.gunicorn_conf, "TEXT": "workers = 2\n", "OWNER": "root",
             "GROUP": group, "MODE": "640", "PRIVATE": "yes"}  # fmt: skip
    for said in ("changed", "no change"):
        done = sudo.run("write-file", write)
        assert_declared(sudo, done)
        assert done.stdout.strip() == said
    # the app's settings (ENV_<NAME>), as setup writes them
    done = sudo.run("write-file", {**write, "DEST": paths.settings_file, "TEXT": 'DEBUG="1"\n'})
    assert_declared(sudo, done)
    assert done.stdout.strip() == "changed"
    assert sudo.run("secrets-have", {"DEST": paths.env_file}).stdout == ""
    text = 'API_TOKEN="t1"\n'
    upload = tmp_path / "upload"
    upload.write_text(text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    done = sudo.run("secrets-install", {"TMP": upload, "DEST": paths.env_file, "GROUP": group, "DIGEST": digest})  # fmt: skip
    assert_declared(sudo, done)
    done = sudo.run("secrets-have", {"DEST": paths.env_file})
    assert_declared(sudo, done)
    assert done.stdout.strip() == f"{digest} root:{group}:640"
    for changed in ("yes", "no"):
        done = sudo.run("enable-service", {"UNIT_CHANGED": changed, "SERVICE": "hello.service", "WEB": "yes"})  # fmt: skip
        assert_declared(sudo, done)
    done = sudo.run("enable-processes", {"CHANGED": "yes", "UNITS": "hello-worker.service"})
    assert_declared(sudo, done)
    assert "systemctl enable -- hello-worker.service" in sudo.as_root()


@needs_root
def test_a_deploy_s_reads_and_setup_files_run_declared_commands(tmp_path: Path, example: config.Settings) -> None:  # fmt: skip
    sudo = strict(tmp_path, example)
    paths, group = layout(example), group_of("nobody")
    Path(paths.etc).mkdir(parents=True)
    Path(paths.gunicorn_conf).write_text("workers = 2\n")
    Path(paths.env_file).write_text('API_TOKEN="t1"\nGREETING="hi"\n')
    web = host(example, user=getpass.getuser())
    _, env = converge.program(web)  # type: ignore[arg-type]
    done = sudo.run("plan", env)
    assert_declared(sudo, done)
    found = converge.parse(done.stdout)
    assert found.files[paths.gunicorn_conf] == "workers = 2\n"
    assert found.secret_names == ("API_TOKEN", "GREETING") and found.secrets.startswith(
        hashlib.sha256(Path(paths.env_file).read_bytes()).hexdigest()
    )
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "1").write_text("workers = 3\n")
    (stage / "2").write_text('API_TOKEN="t2"\n')
    drift = converge.Drift(stage=str(stage), had={paths.gunicorn_conf: True, paths.env_file: True})
    drift.files = [
        converge.Target(paths.gunicorn_conf, "workers = 3\n", "root", group, "640"),
        converge.Target(paths.env_file, 'API_TOKEN="t2"\n', "root", group, "640"),
    ]
    for mode in ("apply", "back", "apply", "forget"):
        if mode == "apply":  # staged (again: an apply removes its stage)
            stage.mkdir(exist_ok=True)
            (stage / "1").write_text("workers = 3\n")
            (stage / "2").write_text('API_TOKEN="t2"\n')
        script, env = converge.script_for(drift, mode, "nobody", {"hello-worker.service"})
        done = subprocess.run(
            ["bash", "-c", shell.bash_text(shell.library() + "\n" + script, env)],
            env={**os.environ, "PATH": f"{sudo.bin}:{os.environ['PATH']}"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert_declared(sudo, done)
    assert Path(paths.gunicorn_conf).read_text() == "workers = 3\n"
    assert sorted(os.listdir(paths.etc)) == ["env", "gunicorn.conf.py"]


def test_the_companion_processes_and_the_logs_run_declared_commands(tmp_path: Path, example: config.Settings) -> None:  # fmt: skip
    sudo = strict(tmp_path, example)
    units = {"UNITS": "hello-worker.service", "SETTLE": 0, "LINES": 30}
    for verb in ("restart", "stop", "start"):
        assert_declared(sudo, sudo.run("restart_processes", {**units, "VERB": verb}))
    sudo.state.write_text("failed\n")  # did not come back: its journal shown
    done = sudo.run("restart_processes", {**units, "VERB": "restart"})
    assert done.returncode == 1 and "a journal line" in done.stderr and sudo.refused() == []
    assert any(re.fullmatch(r"journalctl -u hello-worker\.service --since @\d{10} -n 30 --no-pager -o cat", line) for line in sudo.as_root())  # fmt: skip
    Path(layout(example).logs).mkdir(parents=True)
    web = host(example, user=getpass.getuser())
    for lines in (5, 50, 999):
        done = sudo.run("logs", logs.logs_env(web, lines, False))  # type: ignore[arg-type]
        assert_declared(sudo, done)
        assert "==> journal of hello.service hello-worker.service <==" in done.stdout
    refused = sudo.run("logs", logs.logs_env(web, 1000, False))  # type: ignore[arg-type]
    assert "(journal unavailable: " in refused.stdout  # beyond MAX_LOG_LINES: said, not hidden


def test_facts_asks_sudo_about_each_probe_and_keeps_all_allowed(tmp_path: Path, example: config.Settings) -> None:  # fmt: skip
    web = host(example, user=getpass.getuser())
    body, env = facts.facts_program(web)  # type: ignore[arg-type]
    paths = layout(example)
    for key in ("RELEASES", "VENVS", "SHARED", "INCOMING"):
        Path(str(env[key])).mkdir(parents=True, exist_ok=True)
    Path(paths.etc).mkdir(parents=True)
    Path(paths.gunicorn_conf).write_text("")
    env["UNIT"] = tmp_path / "unit"
    Path(env["UNIT"]).write_text("")
    asked = sudoers.probes(web)  # type: ignore[arg-type]
    allowed = sudoers.rights(example, getpass.getuser(), group_of("nobody"))
    sudo = Sudo.make(tmp_path, allowed)

    def run() -> facts.Facts:
        done = subprocess.run(
            ["bash", "-c", shell.bash_text(body, env)],
            env={
                **os.environ,
                "PATH": f"{sudo.bin}:{os.environ['PATH']}",
                "HOME": str(tmp_path / "home"),
            },
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return facts.parse_facts(web, done.stdout)  # type: ignore[arg-type]

    first = run()
    assert first.sudo_missing == () and not first.sudo_as_refused and sudo.refused() == []
    listed = [line for line in sudo.calls() if " -l " in line]
    assert len(listed) == len(asked) + 1  # each probe, and acting as the app user
    run()  # all allowed, kept: sudo is not asked again while its files are unchanged
    assert [line for line in sudo.calls() if " -l " in line] == listed
    # one right less (the cache is keyed by what is asked: a new rule is asked again)
    gone = next(i for i, r in enumerate(asked) if r.line() == "/usr/bin/systemctl start -- hello.service")  # fmt: skip
    shutil.rmtree(tmp_path / "home" / ".cache" / "fabdeploy")
    sudo = Sudo.make(tmp_path, [r for r in allowed if r.line() != asked[gone].line()])
    assert run().sudo_missing == (gone,)
    assert [pattern(asked[gone]) in line for line in sudo.refused()] == [True]
