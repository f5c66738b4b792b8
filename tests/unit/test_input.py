"""Bad input is caught before any host: shell metacharacters in every key of the env file are
either rejected with ``file:line: KEY: ...`` or reach the hosts only quoted, never executed;
missing files, a bad APP_DIR and uncommitted changes stop a deploy before its tests run."""

from __future__ import annotations

import contextlib
import io
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest
from invoke import Context
from invoke.runners import Result

from tasks import config
from tasks.build import archive, preflight, testrun
from tasks.core import output, shell
from tasks.core.errors import ConfigError, FabdeployError
from tasks.core.records import Audit
from tasks.engine import hooks
from tasks.engine.flow import Flow, Options
from tasks.host import (
    canary,
    install,
    linked,
    lockfile,
    logs,
    migrate,
    provision,
    releases,
    service,
    smoke,
    status,
)
from tasks.host import facts as host_facts
from tasks.ssh import fanout, session
from tasks.ssh import host as ssh_host
from tasks.steps import prepare
from tests.unit.fake_tags import SERVER_313
from tests.unit.test_monitor import LocalConnection, fake_sudo  # noqa: F401 (a fixture)
from tests.unit.test_upload import git

#: Keys whose value is a shell command on purpose: it runs as written (locally for
#: TEST_COMMAND and BUILD_COMMAND; on the hosts, as one quoted argument, for the hooks).
COMMANDS = {
    "TEST_COMMAND",
    "BUILD_COMMAND",
    "HOOK_AFTER_UPLOAD",
    "HOOK_BEFORE_SWITCH",
    "HOOK_AFTER_SWITCH",
    "HOOK_FAILED",
    "MIGRATE_COMMAND",
    "SMOKE_COMMAND",
}
#: Keys only this machine uses (paramiko, fnmatch, the local test run): never sent to a host.
LOCAL_ONLY = {
    "SSH_KEY",
    "KNOWN_HOSTS",
    "APP_DIR",
    "SECRETS_FILE",
    "EXCLUDES",
    "TEST_COMMAND",
    "BUILD_COMMAND",
    "PRIMARY_HOST",
    "HOOK_FAILED",
}


def payloads(mark: Path) -> list[str]:
    """Values that would create ``mark`` if a shell ever executed them."""
    base = [
        f"x;touch {mark}",
        f"$(touch {mark})",
        f"`touch {mark}`",
        f"x|touch {mark}",
        f"x&&touch {mark}",
        f"x'; touch {mark}; '",
        f"x;touch$IFS{mark}",
        f"$(touch$IFS{mark})",
    ]
    return base + ["/" + p for p in base]


def env_file(tmp_path: Path, key: str, value: str) -> Path:
    (tmp_path / "config").mkdir(exist_ok=True)
    lines = [] if key == "APP_NAME" else ["APP_NAME=shop"]
    lines.insert(0 if key == "APP_NAME" else 1, f"{key}={value}")
    (tmp_path / "config" / "staging.env").write_text("\n".join(lines) + "\n")
    return tmp_path / "config" / "staging.env"


# --- what the hosts would be sent ----------------------------------------------------------


class Recorder:
    """A Connection that runs nothing: it records each command and answers with nothing."""

    port = 22
    user = "deploy"
    host = "web1"
    is_connected = True
    _sftp = None

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, command: str, **kwargs: object) -> Result:
        self.commands.append(command)
        return Result(stdout="", stderr="", exited=0, command=command)

    def close(self) -> None:
        pass


def sent_commands(settings: config.Settings, tmp_path: Path) -> list[str]:
    """Every command fabdeploy's remote steps send for ``settings`` (answers are empty, so a
    step may stop early; what it sent until then counts)."""
    conn = Recorder()
    host = ssh_host.Host(conn, settings, output.Output(io.StringIO(), io.StringIO()))  # type: ignore[arg-type]
    built = archive.Build(
        "R1", "abc", tmp_path / "a.tar.gz", "0" * 64, "gunicorn\n", "me@here", tmp_path
    )
    facts = host_facts.Facts("Python 3.13.5", "3.13", "", SERVER_313)
    owner = lockfile.LockOwner.mine()
    hook_context = SimpleNamespace(c=Context(), settings=settings, output=host.output, host=host)
    steps = [
        lambda: provision.system_packages(host),
        lambda: provision.directories(host, "grp"),
        lambda: provision.service_files(host, "grp"),
        lambda: host_facts.read_facts(host),
        lambda: install.ship(host, built, facts),
        lambda: archive.unpack(host, built, [("/srv/x.tar.gz", "0" * 64)]),
        lambda: install.install(host, built, facts),
        lambda: install.remove_release(host, "R1"),
        lambda: smoke.smoke(host, "R1"),
        lambda: migrate.migrate_release(host, "R1"),
        lambda: linked.apply(host, "R1"),
        lambda: service.switch(host, "R1"),
        lambda: service.switch(host, "R1", probes=canary.probe_urls(settings), access_log=True),
        lambda: canary.look(host, 0),
        lambda: service.health(host),
        lambda: service.master_pid(host),
        lambda: service.start(host),
        lambda: lockfile.take_lock(host, owner),
        lambda: lockfile.release_lock(host, owner),
        lambda: releases.inventory(host),
        lambda: releases.read_revision(host, "R1"),
        lambda: releases.append_audit(host, Audit("t", "deploy", "R1", "abc", "me", "ok")),
        lambda: status.gather_status([host], settings, sample=False),
        lambda: fanout.ask([host], settings, shell.shell("resources"), status._base_env, "r"),
        lambda: fanout.ask(
            [host], settings, shell.shell("logs"), lambda h: logs.logs_env(h, 5, False), "l"
        ),
    ]
    for point in (p for p in hooks.ENV_POINTS if p != "failed"):  # failed: local, tested apart
        for release in ("R1", ""):
            for hook in hooks.from_settings(settings, point):
                ctx = hooks.HookContext(point, release=release, **vars(hook_context))
                steps.append(lambda ctx=ctx, hook=hook: ctx.run(hook.action))
    for step in steps:
        with contextlib.suppress(Exception):
            step()
    return conn.commands


def words(text: str) -> list[str]:
    """Shell words of ``text``, with ; & | ( ) < > as words of their own when unquoted."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    return list(lexer)


def uses(command: str, payload: str, mark: str) -> tuple[bool, list[str]]:
    """Whether ``payload`` reaches ``command``, and where it does other than as (part of) one
    quoted word (``mark``, a part of the payload, finds it however it was split)."""
    tokens = words(command)
    scripts = [
        token
        for i, token in enumerate(tokens)
        if mark in token and i >= 2 and tokens[i - 1] == "-c" and tokens[i - 2] == "bash"
    ]
    found = any(payload in token for token in tokens) or any(
        payload in value for script in scripts for value in split_script(script)[0]
    )
    problems = []
    if any(mark in token for token in tokens) and not found:
        problems.append(f"split into several words in {command[:160]!r}")
    for script in scripts:
        problems += unquoted_in_script(script, payload, mark)
    return found, problems


def split_script(script: str) -> tuple[list[str], str]:
    """`Host.script`'s text: the values of its quoted ``NAME=value`` lines (data), its body."""
    body, values = script, []
    prefix = "set -euo pipefail\n"
    if script.startswith(prefix):
        header = prefix
        lexer = shlex.shlex(script[len(prefix) :], posix=True)
        lexer.whitespace_split = True
        with contextlib.suppress(ValueError):  # the body need not be shlex's kind of shell
            for token in lexer:
                name, eq, value = token.partition("=")
                line = f"{name}={shell.quote(value)}\n"
                if not eq or not name.isidentifier() or not script.startswith(line, len(header)):
                    break
                header += line
                values.append(value)
        body = script[len(header) :]
    return values, body


def unquoted_in_script(script: str, payload: str, mark: str) -> list[str]:
    """`Host.script`'s text: quoted ``NAME=value`` lines (data), then a body that must hold the
    payload only inside one quoted word."""
    body = split_script(script)[1]
    return [
        f"unquoted in the script line {line[:160]!r}"
        for line in body.splitlines()
        if mark in line and not any(payload in token for token in words(line))
    ]


@pytest.mark.parametrize("key", [key.name for key in config.KEYS])
def test_shell_metacharacters_in_every_key_are_rejected_or_quoted(tmp_path: Path, key: str) -> None:
    mark = tmp_path / "pwned"
    accepted = []
    for payload in payloads(mark):
        source = env_file(tmp_path, key, payload)
        try:
            settings = config.build("staging", tmp_path)
        except ConfigError as exc:
            assert f"{source}:{1 if key == 'APP_NAME' else 2}: {key}: " in str(exc)
            continue
        accepted.append(payload)
        reached = []
        for command in sent_commands(settings, tmp_path):
            found, problems = uses(command, payload, str(mark))
            assert not problems, (key, payload, problems)
            reached += [command] if found else []
        if key in LOCAL_ONLY:
            assert not reached, f"{key} is local only, yet was sent to a host: {reached[0][:200]}"
        else:
            assert reached, f"{key}: {payload!r} was accepted but reached no command"
    if key in COMMANDS:
        assert accepted, f"{key} is a command: it must accept shell syntax"
    elif key not in LOCAL_ONLY and key not in ("HEALTH_PATH", "CANARY_URLS"):  # RFC 3986 paths
        assert not accepted, f"{key} accepts shell metacharacters: {accepted[0]!r}"
    assert not mark.exists()


def test_hook_commands_reach_the_host_as_one_quoted_argument(tmp_path: Path) -> None:
    payload = f"echo a; touch {tmp_path / 'x'}"
    env_file(tmp_path, "HOOK_AFTER_SWITCH", payload)
    sent = [  # each run by scripts/bounded.sh: the command is its COMMAND value, one word
        split_script(words(c)[-1])[0]
        for c in sent_commands(config.build("staging", tmp_path), tmp_path)
        if payload in split_script(words(c)[-1])[0]
    ]
    assert len(sent) == 2  # in a release, and before one (with PYTHON)
    for values in sent:
        assert values.count(payload) == 1


@pytest.mark.usefixtures("fake_sudo")
def test_health_path_shell_syntax_is_sent_but_never_executed(tmp_path: Path) -> None:
    mark = tmp_path / "pwned"
    root = tmp_path / "srv"
    for payload in (f"/x;touch$IFS{mark}", f"/$(touch$IFS{mark})", f"/x&&touch$IFS{mark}"):
        (tmp_path / "config").mkdir(exist_ok=True)
        (tmp_path / "config" / "staging.env").write_text(
            f"APP_NAME=shop\nDEPLOY_ROOT={root}\nBIND=127.0.0.1:9\nHEALTH_PATH={payload}\n"
        )
        settings = config.build("staging", tmp_path)
        host = ssh_host.Host(LocalConnection(), settings, output.Output(io.StringIO()))  # type: ignore[arg-type]
        statuses = status.gather_status([host], settings, sample=False)
        assert statuses[0].health_status is None  # nothing listens on port 9
        assert service.health(host) == (False, "000")
        assert not mark.exists(), payload


def test_app_dir_with_shell_syntax_is_quoted_for_the_local_tests(tmp_path: Path) -> None:
    mark = tmp_path / "pwned"
    weird = f"app;touch {mark}"
    (tmp_path / weird).mkdir(parents=True)
    env_file(tmp_path, "APP_DIR", weird)
    text = (tmp_path / "config" / "staging.env").read_text() + "TEST_COMMAND=pwd\n"
    (tmp_path / "config" / "staging.env").write_text(text)
    out = io.StringIO()
    testrun.run_suite(Context(), config.build("staging", tmp_path), output.Output(out, out))
    assert "test: passed" in out.getvalue()
    assert not mark.exists()


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("python3", True),
        ("python3.12", True),
        ("/usr/bin/python3", True),
        ("/opt/py 3/bin/python", False),
        ("python3 -I", False),
        ("python3; touch /tmp/x", False),
        ("-c", False),
        ("../python", False),
    ],
)
def test_python_is_a_path_or_a_plain_command_name(tmp_path: Path, value: str, ok: bool) -> None:
    env_file(tmp_path, "PYTHON", value)
    if ok:
        assert config.build("staging", tmp_path).python == value
    else:
        with pytest.raises(ConfigError, match=r"staging\.env:2: PYTHON: expected an absolute"):
            config.build("staging", tmp_path)


# --- before connecting, before the tests ---------------------------------------------------


def test_a_missing_ssh_key_is_named_before_any_connection(tmp_path: Path) -> None:
    env_file(tmp_path, "SSH_KEY", "keys/deploy_ed25519")
    settings = config.build("staging", tmp_path)
    with pytest.raises(ConfigError) as caught:
        session.check_key_file(settings)
    source = tmp_path / "config" / "staging.env"
    assert f"{source}:2: SSH_KEY: key file {tmp_path}/keys/deploy_ed25519 not found" in str(
        caught.value
    )
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "deploy_ed25519").write_text("key")
    session.check_key_file(settings)


def project(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text(f"APP_NAME=shop\nAPP_DIR=app\n{extra}")
    return tmp_path


def test_app_dir_and_requirements_are_checked(tmp_path: Path) -> None:
    root = project(tmp_path)
    with pytest.raises(ConfigError, match=r"staging\.env:2: APP_DIR: .*/app does not exist"):
        preflight.local(config.build("staging", root))
    (root / "app").mkdir()
    with pytest.raises(
        ConfigError,
        match=r"staging\.env: REQUIREMENTS: APP_DIR .*/app has none of uv\.lock \(with "
        r"pyproject\.toml\), poetry\.lock, pdm\.lock, requirements\.txt",
    ):
        preflight.local(config.build("staging", root))
    (root / "app" / "requirements.txt").write_text("\n")
    with pytest.raises(ConfigError, match=r"requirements\.txt is empty"):
        preflight.local(config.build("staging", root))
    (root / "app" / "requirements.txt").write_text("gunicorn\n")
    preflight.local(config.build("staging", root))  # a plain directory: nothing else to check


def git_project(tmp_path: Path, ignore: str = "") -> Path:
    root = project(tmp_path)
    git(root, "init", "-q")
    (root / ".gitignore").write_text(ignore)
    (root / "app").mkdir()
    (root / "app" / "requirements.txt").write_text("gunicorn\n")
    return root


def test_an_app_dir_git_ignores_says_so(tmp_path: Path) -> None:
    root = git_project(tmp_path, "app/\n")
    git(root, "add", ".gitignore")
    git(root, "commit", "-q", "-m", "one")
    with pytest.raises(FabdeployError) as caught:
        preflight.local(config.build("staging", root))
    message = str(caught.value)
    assert f"APP_DIR {root / 'app'} is ignored by git (rule .gitignore:1:app/)" in message
    assert "Stop ignoring it and commit it, or move the app out of the git work tree" in message


def test_an_app_dir_not_in_head_says_what_to_do(tmp_path: Path) -> None:
    root = git_project(tmp_path)
    git(root, "add", ".gitignore")
    git(root, "commit", "-q", "-m", "one")
    with pytest.raises(FabdeployError) as caught:
        preflight.local(config.build("staging", root))
    assert f"APP_DIR {root / 'app'} is not in HEAD" in str(caught.value)
    assert f"git -C {root} add app && git -C {root} commit" in str(caught.value)
    preflight.local(config.build("staging", root), allow_dirty=True)
    git(root, "add", "app")
    git(root, "commit", "-q", "-m", "two")
    preflight.local(config.build("staging", root))
    (root / "app" / "new.py").write_text("x = 1\n")
    with pytest.raises(
        FabdeployError, match=r"uncommitted changes in .*app: new\.py\. Commit them"
    ):
        preflight.local(config.build("staging", root))


def test_no_tests_found_says_how_to_set_test_command(tmp_path: Path) -> None:
    root = project(tmp_path, "TEST_COMMAND=python -m pytest -q\n")
    (root / "app").mkdir()
    out = io.StringIO()
    with pytest.raises(FabdeployError) as caught:
        testrun.run_suite(Context(), config.build("staging", root), output.Output(out, out))
    message = str(caught.value)
    assert "no tests found" in message and "pytest's exit 5" in message
    assert f"set TEST_COMMAND in {root / 'config' / 'staging.env'}" in message
    assert "local tests failed" not in message
    assert "pytest collects" not in message  # no test file it skipped: no hint


def test_no_tests_found_names_the_unittest_file_pytest_skips(tmp_path: Path) -> None:
    """A Flask tutorial's `tests.py` of unittest cases: pytest's default patterns skip it."""
    root = project(tmp_path, "TEST_COMMAND=python -m pytest -q\n")
    (root / "app").mkdir()
    (root / "app" / "tests.py").write_text(
        "import unittest\n\nclass T(unittest.TestCase):\n    def test_x(self):\n        pass\n"
    )
    out = io.StringIO()
    with pytest.raises(FabdeployError) as caught:
        testrun.run_suite(Context(), config.build("staging", root), output.Output(out, out))
    message = str(caught.value)
    assert "pytest collects test_*.py and *_test.py files, not tests.py" in message, message
    assert (
        "TEST_COMMAND=python -m unittest" in message and "python -m pytest -q tests.py" in message
    )


def test_a_summary_json_path_that_cannot_be_written_stops_the_deploy_first(
    tmp_path: Path,
) -> None:
    flow = Flow.__new__(Flow)
    flow.options = Options(summary_json=str(tmp_path / "no" / "such" / "summary.json"))
    with pytest.raises(FabdeployError, match=r"--summary-json .*summary\.json: cannot write in"):
        prepare.check_locally(flow)
