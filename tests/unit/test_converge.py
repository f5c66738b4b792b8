"""The deploy's convergence of setup's files (tasks/host/converge.py): what the host has against
what setup would write now, what is refused, and scripts/converge.sh putting files in place
and back under local bash (sudo and systemctl faked on PATH)."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks.core import shell
from tasks.core.errors import HostError
from tasks.core.paths import Layout, layout, unit_file
from tasks.host import converge, units


def settings(tmp_path: Path, extra: str = "", secrets: str = 'API_TOKEN="one"\n'):  # type: ignore[no-untyped-def]
    from tasks import config

    (tmp_path / "config").mkdir(parents=True, exist_ok=True)
    (tmp_path / "secrets.env").write_text(secrets)
    keys = {"APP_NAME": "shop", "BIND": "0.0.0.0:8123", "WORKERS": "3"}
    keys.update({"SECRETS_FILE": "secrets.env", "PROCESS_WORKER": "celery worker"})
    keys.update(line.split("=", 1) for line in extra.splitlines())  # type: ignore[misc]
    (tmp_path / "config" / "staging.env").write_text("".join(f"{k}={v}\n" for k, v in keys.items()))
    return config.build("staging", tmp_path)


def host(tmp_path: Path, extra: str = "", secrets: str = 'API_TOKEN="one"\n'):  # type: ignore[no-untyped-def]
    return SimpleNamespace(
        name="web1", app_user="deploy", settings=settings(tmp_path, extra, secrets)
    )


def answer(files: dict[str, str | None], group: str = "deploy", secrets: str = "", stale: str = "") -> str:  # fmt: skip
    """What scripts/plan.sh prints for ``files``."""
    lines = [f"group={group}", f"secrets={secrets}"]
    for path, text in files.items():
        lines.append(f"file={path} " + ("-" if text is None else base64.b64encode(text.encode()).decode()))  # fmt: skip
    lines += [f"stale={stale}"] if stale else []
    return "\n".join([*lines, "secret=API_TOKEN", ""])


def as_set_up(tmp_path: Path, extra: str = "") -> tuple[dict[str, str | None], str]:
    """The files and the secrets line `fab setup` leaves with ``extra`` settings."""
    old = host(tmp_path / "old", extra)
    files: dict[str, str | None] = {t.path: t.text for t in converge.targets(old, "deploy")}
    target = converge.secrets_target(old, "deploy")
    assert target is not None
    return files, target[1]


def test_parse_reads_files_secrets_and_stale_processes() -> None:
    found = converge.parse(answer({"/etc/a": "x = 1\n", "/etc/b": None}, secrets="ab u:g:600", stale="web"))  # fmt: skip
    assert found.files == {"/etc/a": "x = 1\n", "/etc/b": None}
    assert found.group == "deploy" and found.secrets == "ab u:g:600"
    assert found.secret_names == ("API_TOKEN",) and found.stale == ("web",)


def test_nothing_changed_means_no_drift(tmp_path: Path) -> None:
    files, secrets = as_set_up(tmp_path)
    drift = converge.drift(host(tmp_path), converge.parse(answer(files, secrets=secrets)))
    assert not drift and drift.files == [] and not drift.secrets


def test_a_new_gunicorn_config_and_changed_secrets_are_converged(tmp_path: Path) -> None:
    files, secrets = as_set_up(tmp_path)
    now = host(tmp_path, "GUNICORN_CONFIG=conf/gunicorn.py\n", 'API_TOKEN="two"\n')
    drift = converge.drift(now, converge.parse(answer(files, secrets=secrets)))
    paths = layout(now.settings)
    assert [t.path for t in drift.files] == [paths.gunicorn_conf, paths.env_file]
    assert drift.secrets and drift.had == {paths.gunicorn_conf: True, paths.env_file: True}
    conf, env = drift.files
    # root's, readable by the app's group only (docs/security.md#ownership)
    assert "conf/gunicorn.py" in conf.text and (conf.owner, conf.group, conf.mode) == ("root", "deploy", "640")  # fmt: skip
    assert env.text == 'API_TOKEN="two"\n' and (env.owner, env.group, env.mode) == ("root", "deploy", "640")  # fmt: skip
    assert drift.describe() == "gunicorn.conf.py, the secrets"
    # the hooks, migration and smoke check before the switch still read the old values
    note = drift.secrets_note(now.settings)
    assert "hooks, migration and smoke check run with the ones the host has" in note
    assert "setup` first" in note


def test_nothing_is_noted_when_the_secrets_file_is_the_same(tmp_path: Path) -> None:
    files, secrets = as_set_up(tmp_path)
    now = host(tmp_path, "GUNICORN_CONFIG=conf/gunicorn.py\n")
    drift = converge.drift(now, converge.parse(answer(files, secrets=secrets)))
    assert drift and not drift.secrets and drift.secrets_note(now.settings) == ""


def test_a_secrets_file_with_the_wrong_mode_is_rewritten(tmp_path: Path) -> None:
    files, secrets = as_set_up(tmp_path)
    drift = converge.drift(host(tmp_path), converge.parse(answer(files, secrets=secrets[:-3] + "644")))  # fmt: skip
    assert drift.secrets and len(drift.files) == 1
    assert drift.secrets_note(host(tmp_path).settings) == ""  # the same values: nothing to say


def test_a_new_process_gets_its_unit_enabled(tmp_path: Path) -> None:
    files, secrets = as_set_up(tmp_path)
    now = host(tmp_path, "PROCESS_BEAT=celery beat\n")
    drift = converge.drift(now, converge.parse(answer(files, secrets=secrets)))
    beat = units.process_unit_path(now.settings, "beat")
    assert [t.path for t in drift.files] == [beat] and drift.had == {beat: False}
    _, env = converge.script(now, drift, "apply")
    assert env["ENABLE"] == "shop-beat.service" and env["RELOAD"] == "yes"


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        ("BIND=0.0.0.0:9000\n", "bind = '0.0.0.0:9000'"),
        ("WSGI_APP=other:app\n", "ExecStart="),
        ("APP_USER=web\n", "User=web"),
    ],
)
def test_what_a_running_service_keeps_is_refused_with_the_commands(
    tmp_path: Path, extra: str, line: str
) -> None:
    files, secrets = as_set_up(tmp_path)
    now = host(tmp_path, extra)
    now.app_user = now.settings.app_user if "APP_USER" in extra else "deploy"
    group = "web" if "APP_USER" in extra else "deploy"
    with pytest.raises(HostError) as refused:
        converge.drift(now, converge.parse(answer(files, group=group, secrets=secrets)))
    message = refused.value.detail
    assert line in message and "changed nothing" in message
    assert "`fab staging setup`, then `fab staging run.restart --process all`" in message


def test_a_missing_app_user_is_refused(tmp_path: Path) -> None:
    files, secrets = as_set_up(tmp_path)
    conf = Layout("/srv/shop", "shop").gunicorn_conf
    files[conf] = files[conf].replace("workers = 3", "workers = 2")  # type: ignore[union-attr]
    with pytest.raises(HostError, match="fab staging setup"):
        converge.drift(host(tmp_path), converge.parse(answer(files, group="", secrets=secrets)))


def test_health_timeout_in_the_unit_converges(tmp_path: Path) -> None:
    files, secrets = as_set_up(tmp_path)
    now = host(tmp_path, "HEALTH_TIMEOUT=50\n")
    drift = converge.drift(now, converge.parse(answer(files, secrets=secrets)))
    assert unit_file("shop") in [t.path for t in drift.files]


def test_processes_started_before_their_files_changed_make_a_drift(tmp_path: Path) -> None:
    files, secrets = as_set_up(tmp_path)
    drift = converge.drift(host(tmp_path), converge.parse(answer(files, secrets=secrets, stale="web")))  # fmt: skip
    assert drift and drift.files == [] and drift.stale == ("web",)


def test_restart_only_lines() -> None:
    assert converge.restart_only("a\nbind = 'x'\n", "a\nbind = 'y'\n") == ["bind = 'y'"]
    assert converge.restart_only("workers = 2\n", "workers = 3\n") == []


# --- scripts/converge.sh under local bash ---------------------------------------------------


@pytest.fixture
def fakes(tmp_path: Path) -> Path:
    """sudo (runs the command, -n and -u USER dropped) and systemctl (logs its arguments)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "sudo").write_text(
        '#!/bin/bash\n[ "$1" = -n ] && shift\nif [ "$1" = -u ]; then shift 2; fi\n'
        '[ "$1" = -- ] && shift\nexec "$@"\n'
    )
    (bin_ / "systemctl").write_text(f'#!/bin/bash\necho "$*" >> {tmp_path}/systemctl.log\n')
    (bin_ / "install").write_text(  # coreutils' install, without -o/-g (not root here)
        "#!/bin/bash\nargs=()\nwhile [ $# -gt 0 ]; do\n"
        '  case $1 in -o|-g) shift 2;; *) args+=("$1"); shift;; esac\ndone\n'
        'exec /usr/bin/install "${args[@]}"\n'
    )
    for tool in ("sudo", "systemctl", "install"):
        (bin_ / tool).chmod(0o755)
    return bin_


def run_script(fakes: Path, drift: converge.Drift, mode: str, tail: str = "") -> subprocess.CompletedProcess[str]:  # fmt: skip
    body, env = converge.script_for(drift, mode, "", set())
    text = shell.bash_text(shell.library() + "\n" + body + "\n" + tail, env)
    return subprocess.run(
        ["bash", "-c", text],
        env={**os.environ, "PATH": f"{fakes}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
    )


def staged(tmp_path: Path, texts: dict[Path, str], had: dict[Path, bool]) -> converge.Drift:
    stage = tmp_path / "stage"
    stage.mkdir()
    drift = converge.Drift(stage=str(stage))
    for number, (path, text) in enumerate(texts.items(), 1):
        (stage / str(number)).write_text(text)
        drift.files.append(converge.Target(str(path), text, "root", "root", "640"))
        drift.had[str(path)] = had[path]
    return drift


def test_apply_puts_files_in_place_and_back_restores_them(tmp_path: Path, fakes: Path) -> None:
    old, new = tmp_path / "gunicorn.conf.py", tmp_path / "new.service"
    old.write_text("workers = 2\n")
    drift = staged(tmp_path, {old: "workers = 3\n", new: "[Unit]\n"}, {old: True, new: False})
    done = run_script(fakes, drift, "apply")
    assert done.returncode == 0, done.stderr
    assert old.read_text() == "workers = 3\n" and new.read_text() == "[Unit]\n"
    assert oct(old.stat().st_mode)[-3:] == "640"
    assert (tmp_path / "gunicorn.conf.py.fabdeploy-old").read_text() == "workers = 2\n"
    assert not Path(drift.stage).exists()  # the staged copies are gone once live
    assert run_script(fakes, drift, "back").returncode == 0
    assert old.read_text() == "workers = 2\n" and not new.exists()
    assert (tmp_path / "systemctl.log").read_text() == "daemon-reload\n" * 2


def test_a_failure_after_apply_puts_the_old_files_back(tmp_path: Path, fakes: Path) -> None:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("workers = 2\n")
    drift = staged(tmp_path, {conf: "workers = 3\n"}, {conf: True})
    failed = run_script(fakes, drift, "apply", tail='echo "switch failed" >&2; exit 1')
    assert failed.returncode == 1 and "back as they were" in failed.stderr
    assert conf.read_text() == "workers = 2\n"


def test_the_switch_calls_setup_files_back_before_it_hands_back() -> None:
    text = shell.script_file("switch.sh")
    rollback = text[text.index("rollback() {") :]
    assert rollback.index("setup_files_back") < rollback.index("kill -HUP")


def test_forget_removes_the_copies_and_apply_ignores_an_earlier_ones(
    tmp_path: Path, fakes: Path
) -> None:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("workers = 2\n")
    (tmp_path / "gunicorn.conf.py.fabdeploy-old").write_text("from a killed deploy\n")
    drift = staged(tmp_path, {conf: "workers = 3\n"}, {conf: True})
    assert run_script(fakes, drift, "apply").returncode == 0
    assert (tmp_path / "gunicorn.conf.py.fabdeploy-old").read_text() == "workers = 2\n"
    assert run_script(fakes, drift, "forget").returncode == 0
    assert not (tmp_path / "gunicorn.conf.py.fabdeploy-old").exists()


def test_secrets_digest_is_setups(tmp_path: Path) -> None:
    h = host(tmp_path)
    target, line = converge.secrets_target(h, "deploy") or (None, "")
    assert target is not None and target.path == "/etc/shop/env"
    assert line == f"{hashlib.sha256(target.text.encode()).hexdigest()} root:deploy:640"
    assert units.render_gunicorn_conf(h.settings) in [t.text for t in converge.targets(h, "deploy")]  # fmt: skip


# --- in the deploy's switch ----------------------------------------------------------------


def switching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """web1 (web) and jobs1 (worker only), each with a staged gunicorn.conf.py; what the
    switch, `converge.change_files`, link_current and the unstaging were given, in order."""
    from tasks import config
    from tasks.engine.flow import Flow
    from tasks.host import install, processes, service
    from tasks.steps import finish, switch
    from tests.unit.test_deploy import FlowHost

    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text(
        "APP_NAME=shop\nROLE_WEB=web1\nROLE_WORKER=jobs1\nPROCESS_WORKER=celery worker\n"
    )
    settings = config.build("staging", tmp_path)
    hosts = [FlowHost(name, settings) for name in ("web1", "jobs1")]
    for h in hosts:
        h.app_user = "deploy"  # type: ignore[attr-defined]
    seen: list[tuple[str, str, str]] = []

    def switched(host, release, before=None, setup_files=None, probes=None, access_log=False):  # type: ignore[no-untyped-def]  # fmt: skip
        seen.append(("switch", host.name, str(setup_files[1]["MODE"]) if setup_files else ""))

    monkeypatch.setattr(service, "switch", switched)
    monkeypatch.setattr(service, "current_release", lambda host: "R2")
    monkeypatch.setattr(install, "remove_release", lambda *a: None)
    monkeypatch.setattr(finish, "record_result", lambda *a, **k: None)
    monkeypatch.setattr(switch, "record_result", lambda *a, **k: None)
    monkeypatch.setattr(converge, "change_files", lambda host, f, mode: seen.append(("run", host.name, mode)))  # fmt: skip
    monkeypatch.setattr(processes, "link_current", lambda host, r: seen.append(("link", host.name, r)))  # fmt: skip
    monkeypatch.setattr(converge, "discard", lambda host, f: seen.append(("discard", host.name, f.stage)))  # fmt: skip
    flow = Flow(SimpleNamespace(config={}), settings, hosts)  # type: ignore[arg-type]
    for h in hosts:
        flow.at(h).release, flow.at(h).served = "R2", "R1"
        conf = converge.Target("/srv/shop/shared/gunicorn.conf.py", "workers = 3\n", "deploy", "deploy")  # fmt: skip
        flow.at(h).drift = converge.Drift(files=[conf], had={conf.path: True}, stage="/home/d/s")
    return flow, hosts, seen


def test_the_switch_takes_the_files_and_a_batch_going_back_restores_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.steps import switch

    flow, (web1, jobs1), seen = switching(tmp_path, monkeypatch)
    switch.switch_one(flow, web1)
    switch.switch_one(flow, jobs1)
    assert seen == [("switch", "web1", "apply"), ("run", "jobs1", "apply"), ("link", "jobs1", "R2")]  # fmt: skip
    assert flow.at("web1").drift.applied
    seen.clear()
    switch.go_back(flow, web1)  # another host of its batch failed: back to R1, old files first
    assert seen == [("switch", "web1", "back")] and not flow.at("web1").drift.applied


def test_a_deploy_that_fails_before_the_switch_unstages_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.steps import switch

    flow, (web1, _), seen = switching(tmp_path, monkeypatch)
    switch.remove_unswitched(flow, web1)
    assert seen == [("discard", "web1", "/home/d/s")]


def test_a_host_without_drift_switches_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from tasks.steps import switch

    flow, (web1, _), seen = switching(tmp_path, monkeypatch)
    flow.at("web1").drift = converge.Drift()
    switch.switch_one(flow, web1)
    assert seen == [("switch", "web1", "")]


def test_app_settings_are_converged_in_clear_and_emptied_when_all_are_removed(
    tmp_path: Path,
) -> None:
    files, secrets = as_set_up(tmp_path)  # set up before ENV_ existed: no settings file
    paths = layout(host(tmp_path / "x").settings)
    assert paths.settings_file not in files  # an app without settings writes no file
    now = host(tmp_path / "now", "ENV_DEBUG=1\nENV_SITE=https://shop.example\n")
    drift = converge.drift(now, converge.parse(answer(files, secrets=secrets)))
    assert [t.path for t in drift.files] == [paths.settings_file]  # the settings alone
    target = drift.files[0]
    assert target.text == 'DEBUG="1"\nSITE="https://shop.example"\n'  # in clear, sorted
    assert (target.owner, target.group, target.mode) == ("root", "deploy", "640")
    assert drift.had == {paths.settings_file: False} and not drift.secrets
    assert drift.describe() == "the settings (DEBUG=1, SITE=https://shop.example)"
    # plan's words for it, against what the host has
    assert converge.settings_changes(None, now.settings) == ["DEBUG=1", "SITE=https://shop.example"]  # fmt: skip
    have = 'DEBUG="0"\nOLD="x"\nSITE="https://shop.example"\n'
    assert converge.settings_changes(have, now.settings) == ["DEBUG: 0 -> 1", "OLD removed"]
    # every ENV_ key removed: the host's file is emptied, not left to give the old values
    files[paths.settings_file] = target.text
    bare = host(tmp_path / "bare")
    drift = converge.drift(bare, converge.parse(answer(files, secrets=secrets)))
    assert [(t.path, t.text) for t in drift.files] == [(paths.settings_file, "")]
    # a setting named like a sandbox directive is no restart-only line
    files[paths.settings_file] = 'ProtectSystem="a"\n'
    odd = host(tmp_path / "odd", "ENV_ProtectSystem=b\n")
    assert converge.drift(odd, converge.parse(answer(files, secrets=secrets))).files
