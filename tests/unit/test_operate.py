"""Operating a fleet, the parts that need no host: switch rounds (SWITCH_BATCH as Ansible's
serial), the rollback target from revisions.log, the resume record, deploy ids in REVISION and
revisions.log, and how check and plan word what they find. Each is also proven on real hosts
(tests/integration/test_fleet_ops.py, test_check.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks import config
from tasks.core.errors import ConfigError, FabdeployError
from tasks.core.output import Output
from tasks.core.paths import local_state
from tasks.core.records import Audit, Revision
from tasks.engine import batches, resume
from tasks.engine.flow import Flow, HostState
from tasks.host import releases
from tasks.steps import checks, planning, resuming, rollback


def settings(tmp_path: Path, extra: str = "") -> config.Settings:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\n" + extra)
    return config.build("staging", tmp_path)


@pytest.mark.parametrize(
    ("batch", "hosts", "sizes"),
    [
        ("1,25%", 16, [1, 4, 4, 4, 3]),
        ("1,25%", 3, [1, 1, 1]),
        ("1,25%", 1, [1]),
        ("1,25%", 8, [1, 2, 2, 2, 1]),
        ("1", 3, [1, 1, 1]),
        ("50%", 16, [8, 8]),
        ("1,2", 3, [1, 2]),
        ("2,100%", 5, [2, 3]),
    ],
)
def test_switch_rounds_follow_ansibles_serial(
    tmp_path: Path, batch: str, hosts: int, sizes: list[int]
) -> None:
    found = batches.batch_sizes(settings(tmp_path, f"SWITCH_BATCH={batch}\n").switch_batch, hosts)
    assert found == sizes
    names = [f"h{i}" for i in range(hosts)]
    assert [len(r) for r in batches.rounds(names, found)] == sizes
    assert [n for r in batches.rounds(names, found) for n in r] == names


def test_the_default_is_a_canary_then_quarters(tmp_path: Path) -> None:
    assert settings(tmp_path).switch_batch == "1,25%"


@pytest.mark.parametrize("bad", ["0", "1,0%", "abc", "1,,2", "101%"])
def test_a_bad_switch_batch_names_its_line(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match=r"staging\.env:2: SWITCH_BATCH"):
        settings(tmp_path, f"SWITCH_BATCH={bad}\n")


def log(*entries: tuple[str, str, str]) -> str:
    return "".join(
        Audit("t", action, release, "rev", "u", result).format() + "\n"
        for action, release, result in entries
    )


def test_rollback_goes_to_what_served_before_the_current_one() -> None:
    # deploy A, B, rollback to A, deploy C: before C served A (not B, rolled away from)
    history = log(
        ("deploy", "A", "ok"), ("deploy", "B", "ok"), ("rollback", "A", "ok"), ("deploy", "C", "ok")
    )
    assert releases.served_before(history, "C", {"A", "B", "C"}) == "A"
    assert releases.served_before(history, "C", {"B", "C"}) == "B"  # A is gone: the one before
    assert releases.served_before(history, "A", {"A", "B", "C"}) == "B"  # after the rollback
    failed = log(("deploy", "A", "ok"), ("deploy", "B", "failed"), ("deploy", "C", "ok"))
    assert releases.served_before(failed, "C", {"A", "B", "C"}) == "A"  # B never served
    assert releases.served_before("", "C", {"A"}) == ""
    found = releases.Inventory({"A": "v", "B": "v", "C": "v"}, [], "C", ["v"], history)
    assert found.previous() == "A"


def test_deploy_ids_are_written_and_read_back() -> None:
    audit = Audit("t", "deploy", "R", "rev", "u", "ok", deploy_id="ID7")
    assert "\tdeploy_id=ID7" in audit.format()
    assert Audit.parse(audit.format()) == audit
    assert Audit.parse(Audit("t", "deploy", "R", "rev", "u", "ok").format()).deploy_id == ""
    revision = Revision("rev", "R", "u", "t", "ID7")
    assert Revision.parse(revision.format()) == revision
    assert Revision.parse("revision=r\nrelease=R\nuser=u\ntime=t\n") == Revision("r", "R", "u", "t")


def record_data(ok: bool = False) -> dict[str, object]:
    return {
        "id": "ID1",
        "release": "R2",
        "revision": "abc",
        "ref": "",
        "ok": ok,
        "hosts": [
            {"host": "web1", "result": "serving R2"},
            {"host": "web2", "result": "serving R2"},
            {"host": "web3", "result": "back on R1"},
        ],
    }


def test_resume_takes_the_hosts_not_serving_the_release(tmp_path: Path) -> None:
    found = resume.parse(record_data())
    assert found.to_do(["web1", "web2", "web3", "web4"]) == ["web3"]
    s = settings(tmp_path)
    with pytest.raises(FabdeployError, match="nothing to resume"):
        resume.load(s)
    path = local_state(s).deploy_record
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record_data()))
    output = Output()
    hosts = [SimpleNamespace(name=n, output=output) for n in ("web1", "web2", "web3")]
    todo, last = resuming.to_resume(s, hosts)  # type: ignore[arg-type]
    assert [h.name for h in todo] == ["web3"] and last.id == "ID1"
    path.write_text(json.dumps(record_data(ok=True)))
    assert resuming.to_resume(s, hosts)[0] == []  # type: ignore[arg-type]


def test_rollback_refuses_hosts_that_disagree_naming_each() -> None:
    flow = Flow(
        None,  # type: ignore[arg-type]
        SimpleNamespace(environment="staging"),  # type: ignore[arg-type]
        [SimpleNamespace(name="web1", output=None), SimpleNamespace(name="web2", output=None)],  # type: ignore[list-item]
        "rollback",
    )
    for name, release, served, present in (
        ("web1", "R2", "R3", ["R1", "R2", "R3"]),
        ("web2", "R1", "R2", ["R1", "R2"]),
    ):
        flow.states[name] = HostState(release=release, served=served, present=present)
    with pytest.raises(FabdeployError) as caught:
        rollback.agree_on_release(flow)
    text = str(caught.value)
    assert "web1: serving R3, would go back to R2; has R1, R2, R3" in text
    assert "web2: serving R2, would go back to R1; has R1, R2" in text
    assert "`fab staging rollback --to RELEASE` (on every host: R1, R2)" in text
    flow.at("web1").release = "R1"
    rollback.agree_on_release(flow)  # agreeing hosts pass


def test_check_words_the_port_it_finds(tmp_path: Path) -> None:
    s = settings(tmp_path, "BIND=0.0.0.0:8000\n")
    assert checks.port_finding(s, "free").ok
    assert checks.port_finding(s, "ours").detail == "0.0.0.0:8000 is held by shop.service"
    taken = checks.port_finding(s, 'taken "nc",pid=42')
    assert (
        not taken.ok and taken.detail == "0.0.0.0:8000 is taken by nc (pid 42), not by shop.service"
    )
    assert checks.Finding("disk", False, "1 MiB").line() == "BLOCKS  disk: 1 MiB"


def test_plan_diffs_what_setup_would_write() -> None:
    assert planning.diff("/etc/x", "a\nb\n", "a\nb\n") == ""
    text = planning.diff("/etc/x", "a\nb\n", "a\nc\n")
    assert "-b\n" in text and "+c\n" in text and "/etc/x (setup would write)" in text
