"""The canary (tasks/host/canary.py, tasks/scripts/canary.sh, the switch step's bake): the
access log read from where the switch left it and counted by status under the local bash,
the figures parsed and added up, the one rule that judges them, the bake's looks, and the
runner baking the first round only when later rounds follow."""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks import config
from tasks.core import shell
from tasks.core.errors import FabdeployError, HostError
from tasks.engine import runner
from tasks.engine.step import BATCHES, Step
from tasks.host import canary, service
from tasks.steps import switch as switch_step
from tests.unit.test_pipeline import Host, batched, make_flow

#: gunicorn's default access_log_format: h l u t "r" s b "f" "a".
LINE = (
    '127.0.0.1 - - [08/Dec/2026:01:34:31 +0000] "GET {path} HTTP/1.1" {status} 141 "-" "{agent}"\n'
)


def line(path: str, status: int, agent: str = "curl/8.0") -> str:
    return LINE.format(path=path, status=status, agent=agent)


class Pages(http.server.BaseHTTPRequestHandler):
    """``/bad`` answers 500, ``/gone`` 404, ``/moved`` 302, anything else 200."""

    def do_GET(self) -> None:
        code = {"/bad": 500, "/gone": 404, "/moved": 302}.get(self.path, 200)
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def pages() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a local `Pages` server."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()  # fmt: skip
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def look(log: Path, offset: int = 0, urls: tuple[str, ...] = ()) -> canary.Traffic:
    """``canary.sh`` under the local bash (APP_USER empty: as_app runs as this user), parsed."""
    env = {
        "APP_USER": "",
        "ACCESS_LOG": log,
        "OFFSET": offset,
        "AGENT": canary.AGENT,
        "PROBE_URLS": "\n".join(urls),
        "HEALTH_HOST": "",
    }
    done = subprocess.run(
        ["bash", "-c", shell.bash_text(shell.shell("canary"), env)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return canary.Traffic.parse(done.stdout)


def test_the_script_counts_the_lines_since_the_offset_by_status(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    before = line("/", 200) * 3  # served by the old release: before the switch's mark
    log.write_text(
        before
        + line("/", 500) * 4
        + line("/?token=s3cret", 500)
        + line("/about", 200) * 5
        + line("/gone", 404)
        + line("/health", 200, agent=canary.AGENT) * 2  # our own probes
        + "a line in another format 500\n"
        + line("/late", 500)[:30]  # still being written
    )
    seen = look(log, offset=len(before))
    assert seen.codes == {"500": 5, "200": 5, "404": 1}
    assert (seen.requests, seen.errors, seen.ours, seen.unparsed) == (11, 5, 2, 1)
    assert seen.failed_paths == {"/": 5}  # the query left out
    assert seen.offset == log.stat().st_size - 30  # the partial line is read next time
    assert not seen.rotated and not seen.missing
    with log.open("a") as more:
        more.write(line("/late", 500)[30:] + line("/", 200))
    again = look(log, offset=seen.offset)
    assert again.codes == {"500": 1, "200": 1} and again.failed_paths == {"/late": 1}
    assert again.offset == log.stat().st_size


def test_the_script_says_when_the_log_was_rotated_or_is_missing(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(line("/", 502))
    rotated = look(log, offset=10_000)  # copytruncate: shorter than what was counted
    assert rotated.rotated and rotated.codes == {"502": 1}
    missing = look(tmp_path / "nothing.log", offset=50)
    assert missing.missing and missing.requests == 0 and missing.offset == 0


def test_the_script_probes_each_url_and_a_5xx_or_no_answer_fails(
    tmp_path: Path, pages: str
) -> None:
    log = tmp_path / "access.log"
    log.touch()
    closed = "http://127.0.0.1:9/"  # discard: nothing listens
    urls = (f"{pages}/", f"{pages}/moved", f"{pages}/gone", f"{pages}/bad", closed)
    seen = look(log, urls=urls)
    assert seen.probes == {
        f"{pages}/": "200",
        f"{pages}/moved": "302",
        f"{pages}/gone": "404",
        f"{pages}/bad": "500",
        closed: "000",
    }
    assert seen.failed_probes == {f"{pages}/bad": "500", closed: "000"}


def test_failing_is_a_5xx_or_no_answer_as_lib_sh_says() -> None:
    assert [service.failing(s) for s in ("500", 503, "599", "000", "")] == [True] * 3 + [True, False]  # fmt: skip
    assert not any(service.failing(s) for s in ("200", "301", "404", "400", 429))
    library = shell.library()
    for status, fails in (("500", True), ("000", True), ("404", False), ("302", False)):
        done = subprocess.run(["bash", "-c", f"{library}\nfailing {status}"], check=False)
        assert (done.returncode == 0) == fails == service.failing(status)


def test_the_figures_add_up_and_read_as_one_line() -> None:
    first = canary.Traffic.parse(
        "offset=100\ncodes=200:10 500:2\nfailed=2:/\nours=1\nunparsed=0\nprobes=200@http://h/"
    )
    later = canary.Traffic.parse(
        "offset=300\ncodes=200:6 502:2\nfailed=1:/ 1:/cart\nours=1\nunparsed=1\n"
        "probes=500@http://h/"
    )
    both = first.add(later)
    assert both.codes == {"200": 16, "500": 2, "502": 2}
    assert (both.requests, both.errors, both.rate, both.offset) == (20, 4, 20.0, 300)
    assert both.failed_paths == {"/": 3, "/cart": 1} and both.unparsed == 1
    assert both.failed_probes == {"http://h/": "500"}
    both.seconds = 4.2
    assert both.line() == (
        "20 requests, 4 answered 5xx (20.0%) in 4s, by path: / 3, /cart 1, 1 access log lines "
        "without a status; probes: http://h/ 500"
    )
    assert both.data() == {
        "requests": 20,
        "errors": 4,
        "rate": 20.0,
        "codes": {"200": 16, "500": 2, "502": 2},
        "unparsed": 1,
        "seconds": 4.2,
        "probes": {"http://h/": "500"},
        "failed_probes": {"http://h/": "500"},
        "failed_paths": {"/": 3, "/cart": 1},
    }


@pytest.fixture
def settings(tmp_path: Path) -> config.Settings:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\nBIND=0.0.0.0:8001\n")
    return config.build("staging", tmp_path)


def traffic(ok: int, errors: int, **probes: str) -> canary.Traffic:
    codes = {"200": ok, "500": errors} if errors else {"200": ok}
    failed = {url: code for url, code in probes.items() if service.failing(code)}
    return canary.Traffic(codes=codes, probes=probes, failed_probes=failed)


def test_the_verdict_counts_a_rate_only_over_enough_requests(settings: config.Settings) -> None:
    assert (settings.canary_max_5xx, settings.canary_min_requests) == (5, 20)
    assert canary.verdict(traffic(0, 19), settings) == ""  # too few to judge
    assert canary.verdict(traffic(19, 1), settings) == ""  # 5% is not over 5%
    assert canary.verdict(traffic(18, 2), settings) == (
        "2 of 20 requests answered 5xx (10.0%, over CANARY_MAX_5XX=5%)"
    )
    # the figures: 449 of 761 requests
    assert "449 of 761 requests answered 5xx (59.0%" in canary.verdict(traffic(312, 449), settings)
    strict = replace(settings, canary_max_5xx=0, canary_min_requests=1)
    assert (
        canary.verdict(traffic(0, 1), strict) != "" and canary.verdict(traffic(5, 0), strict) == ""
    )


def test_the_verdict_fails_a_probe_whatever_the_count(settings: config.Settings) -> None:
    seen = traffic(0, 0, **{"http://127.0.0.1:8001/": "500"})
    assert canary.verdict(seen, settings) == "probe http://127.0.0.1:8001/ answered 500"
    assert canary.verdict(traffic(0, 0, **{"http://h/": "404"}), settings) == ""
    assert canary.probe_urls(settings) == ["http://127.0.0.1:8001/"]


def test_a_switch_output_gives_its_probes_and_the_access_mark() -> None:
    out = (
        "new release's requests: /srv/shop/shared/log/access.log from byte 4096\n"
        "probe http://127.0.0.1:8000/ answered 200\nprobe http://127.0.0.1:8000/x answered 301\n"
    )
    assert service.probed(out) == {
        "http://127.0.0.1:8000/": "200",
        "http://127.0.0.1:8000/x": "301",
    }


# --- the bake: the step's looks, and the runner -------------------------------------------


def baking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, looks: list[str], extra: str = ""
) -> tuple[object, Host, list[int]]:
    """A flow whose canary web1 looks as ``looks`` say (one a look), and the offsets asked."""
    flow = make_flow(tmp_path, extra or "CANARY_BAKE=1\n", names=("web1", "web2"))
    host = flow.hosts[0]
    flow.at(host).access_from = 500
    asked: list[int] = []

    def answer(host: Host, offset: int) -> canary.Traffic:
        asked.append(offset)
        return canary.Traffic.parse(looks.pop(0) if looks else f"offset={offset}")

    monkeypatch.setattr(canary, "look", answer)
    monkeypatch.setattr(canary, "POLL", 0.01)
    return flow, host, asked


def test_a_bake_that_sees_the_rate_go_over_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks = ["offset=600\ncodes=200:10", "offset=900\ncodes=200:2 500:30\nfailed=30:/"]
    flow, host, asked = baking(tmp_path, monkeypatch, looks, "CANARY_BAKE=3600\n")
    with pytest.raises(HostError) as info:
        switch_step.watch_canary(flow, host)  # type: ignore[arg-type]
    assert asked == [500, 600]  # each look from where the last one stopped; no more after
    assert str(info.value) == (
        "fabdeploy: [web1] canary failed after 0s: 30 of 42 requests answered 5xx (71.4%, over "
        "CANARY_MAX_5XX=5%), by path: / 30"
    )
    assert flow.at(host).canary.requests == 42  # type: ignore[attr-defined, union-attr]


def test_a_quiet_bake_passes_when_its_time_is_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, host, asked = baking(tmp_path, monkeypatch, ["offset=700\ncodes=200:3 500:1"])
    switch_step.watch_canary(flow, host)  # type: ignore[arg-type]
    seen = flow.at(host).canary  # type: ignore[attr-defined]
    assert seen.requests == 4 and seen.errors == 1 and seen.seconds >= 1  # too few to judge
    assert len(asked) > 2 and asked[:2] == [500, 700]


def test_the_runner_bakes_the_first_batch_only_when_later_batches_follow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for batches, baked in (("SWITCH_BATCH=1,2\n", ["bake@web1"]), ("SWITCH_BATCH=100%\n", [])):
        seen: list[str] = []
        flow, step = batched(tmp_path, monkeypatch, seen, batches)
        step = replace(step, bake=lambda flow, host, seen=seen: seen.append(f"bake@{host.name}"))
        runner.perform(flow, step)
        assert [s for s in seen if s.startswith("bake")] == baked
        if baked:
            assert seen.index("bake@web1") == seen.index("switch@web1") + 1
            assert seen.index("bake@web1") < seen.index("saved") < seen.index("switch@web2")


def test_a_failed_bake_sends_the_canary_back_and_switches_no_other_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    flow, step = batched(tmp_path, monkeypatch, seen, "SWITCH_BATCH=1\n")
    for name in ("web1", "web2", "web3"):
        flow.at(name).served = "R1"

    def bake(flow: object, host: Host) -> None:
        seen.append(f"bake@{host.name}")
        raise HostError(host.name, "canary failed: probe http://h/ answered 500")

    with pytest.raises(FabdeployError) as info:
        runner.perform(flow, replace(step, bake=bake))
    assert seen == ["switch@web1", "bake@web1", "back@web1", "unreached@web2", "unreached@web3"]
    assert str(info.value).startswith(
        "fabdeploy: canary (batch 1 of 3) failed on 1 host(s): [web1] canary failed: probe http://h/ "
        "answered 500. That batch went back to what it served. No other host was switched."
    )


def test_only_a_deploy_with_a_bake_and_later_rounds_marks_the_access_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, list[str], bool]] = []

    def switched(host, release, before=None, files=None, mode="apply", probes=None, access_log=False):  # type: ignore[no-untyped-def]  # fmt: skip
        calls.append((host.name, list(probes or []), access_log))
        return service.Switched(release, "R1", False, {"u": "200"}, 42 if access_log else None)

    monkeypatch.setattr(switch_step, "switch_host", switched)
    for action, extra in (("deploy", ""), ("rollback", ""), ("deploy", "CANARY_BAKE=0\n")):
        calls.clear()
        flow = make_flow(tmp_path, extra, action=action, names=("web1", "web2"))
        for host in flow.hosts:
            flow.at(host).release = "R2"
            switch_step.switch_one(flow, host)
        url = "http://127.0.0.1:8000/"
        if action == "rollback":
            assert calls == [("web1", [], False), ("web2", [], False)]
        else:
            baking = not extra
            assert calls == [("web1", [url], baking), ("web2", [url], False)]
            assert flow.at("web1").access_from == (42 if baking else None)
            assert flow.at("web2").probes == {"u": "200"}


def test_a_host_without_a_mark_is_not_baked(tmp_path: Path) -> None:
    flow = make_flow(tmp_path, names=("web1", "web2"))
    ran: list[str] = []
    flow.on = lambda host, name, work: ran.append(name)  # type: ignore[method-assign]
    switch_step.bake_canary(flow, flow.hosts[0])
    assert ran == []
    flow.at("web1").access_from = 0
    switch_step.bake_canary(flow, flow.hosts[0])
    assert ran == ["canary"]


def test_the_deploy_bakes_and_the_rollback_does_not() -> None:
    from tasks.steps import lists

    assert lists.SWITCH.bake is switch_step.bake_canary and lists.SWITCH_BACK.bake is None
    assert lists.SWITCH.where == lists.SWITCH_BACK.where == BATCHES
    assert isinstance(lists.SWITCH, Step)


def test_lib_sh_probes_say_who_they_are() -> None:
    assert f"User-Agent: {canary.AGENT}" in shell.library()
    assert os.path.basename(shell.__file__) == "shell.py"


# --- fab plan ------------------------------------------------------------------------------


def test_plan_shows_the_probes_everywhere_and_the_bake_on_the_canary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from invoke import Context

    from tasks.steps import planning
    from tests.unit.test_noop import REV, FakeHost, facts

    (tmp_path / "config").mkdir()
    env = tmp_path / "config" / "staging.env"

    def plan(text: str) -> list[planning.HostPlan]:
        env.write_text(
            "APP_NAME=shop\nROLE_WEB=web1,web2\nROLE_WORKER=jobs1\nPROCESS_WORKER=celery worker\n"
            + text
        )
        s = config.build("staging", tmp_path)
        hosts = [FakeHost(name=name, settings=s) for name in ("web1", "web2", "jobs1")]
        found = {host.name: facts() for host in hosts}
        return planning.make_plan(
            Context(), s, hosts, SimpleNamespace(revision="new", content="", outputs=None), found
        )  # type: ignore[arg-type]

    def plan_host(c: object, host: FakeHost, b: object, f: object) -> planning.HostPlan:
        return planning.HostPlan(host.name, "R1", REV, "new", True, 0, False, "d", True, [])

    monkeypatch.setattr(planning, "plan_host", plan_host)
    web1, web2, jobs1 = plan("")
    home = "http://127.0.0.1:8000/"
    assert (web1.probes, web2.probes, jobs1.probes) == ([home], [home], [])  # no web on jobs1
    assert web1.canary == {"bake": 30, "max_5xx": 5, "min_requests": 20} and web1.round == 1
    assert web2.canary == jobs1.canary == {}
    said = planning.lines(web1)
    assert f"probe on the smoke check's side port, then after the switch: {home} (a 5xx or no answer stops the deploy; after the switch it sends the host back)" in said  # fmt: skip
    assert (
        "canary: watched 30s after its switch, before the next round: 5xx over 5% of at least "
        "20 requests in its access log, or a probe's 5xx, sends it back and stops the deploy"
    ) in said
    assert not any(line.startswith("canary") for line in planning.lines(web2))
    web1, _, _ = plan("SWITCH_BATCH=100%\nCANARY_URLS=/,/login\n")
    assert web1.canary == {} and web1.probes == [home, home + "login"]  # one round: no bake
    web1, _, _ = plan("CANARY_BAKE=0\nCANARY_URLS=\n")
    assert web1.canary == {} and web1.probes == []
    assert not any("probe" in line or "canary" in line for line in planning.lines(web1))


def test_the_summary_shows_the_bake_after_the_switch_and_the_canary_figures(tmp_path: Path) -> None:
    from tasks.engine import summary
    from tasks.steps import lists

    flow = make_flow(tmp_path, names=("web1", "web2"))
    flow.steps = (lists.SWITCH, lists.UNLOCK)
    flow.timings = {"web1": {"switch": 1.0, "unlock": 0.1, "canary": 2.0}, "web2": {"switch": 1.0}}
    flow.at("web1").probes = {"http://127.0.0.1:8000/": "200"}
    flow.at("web1").canary = canary.Traffic(codes={"200": 40}, seconds=2.0)
    header, *rows = summary.text(flow).splitlines()
    assert header.split()[:5] == ["host", "switch", "canary", "unlock", "total"]
    assert rows[-1] == "canary web1: 40 requests, 0 answered 5xx (0.0%) in 2s"
    hosts = summary.data(flow)["hosts"]
    assert hosts[0]["probes"] == {"http://127.0.0.1:8000/": "200"}  # type: ignore[index]
    assert hosts[0]["canary"]["requests"] == 40 and hosts[1]["canary"] is None  # type: ignore[index]
