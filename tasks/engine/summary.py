"""The end of a command: the summary table (`table`), the JSON summary (`data`, docs/json.md),
the record for ``--resume`` (`save`), every connection closed (`reported`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..build import gitref
from ..core import report
from ..core.errors import detail
from ..core.paths import local_state
from ..core.report import write_json
from .batches import describe_rounds
from .flow import LOCAL_ROW

if TYPE_CHECKING:
    from .flow import Flow


@contextmanager
def reported(flow: Flow, *, table: bool = True) -> Iterator[Flow]:
    """Print the summary table (``table``) and close every connection when the command ends."""
    error: BaseException | None = None
    try:
        yield flow
    except BaseException as exc:
        error = exc
        raise
    finally:
        if flow.build:
            flow.build.cleanup()
        gitref.remove(flow.settings)  # the export of `deploy --ref`
        if flow.timings and table:
            flow.say(text(flow))
        try:
            save(flow, error, final=True)
        except OSError as exc:  # never hides how the deploy itself ended
            flow.output.line("", f"cannot record the deploy for --resume: {exc}", err=True)
        if flow.options.summary_json:
            try:
                write_json(flow.options.summary_json, data(flow, error), flow.output.clean)
            except OSError as exc:  # never hides how the deploy itself ended
                flow.output.line(
                    "", f"--summary-json: cannot write {flow.options.summary_json}: {exc}", err=True
                )
        for host in flow.hosts:
            host.close()


def text(flow: Flow) -> str:
    """The summary table: seconds per step, result and SSH use per host (and the local steps)."""
    order: list[str] = []
    for step in flow.steps:  # the canary's bake (`Step.bake`) right after its step
        order += [step.name, "canary"] if step.bake else [step.name]
    steps = [s for s in order if any(s in t for t in flow.timings.values())]
    steps += [s for t in flow.timings.values() for s in t if s not in steps]
    rows, results = [], flow.results()
    for where in [LOCAL_ROW, *(h.name for h in flow.hosts)]:
        spent = flow.timings.get(where, {})
        host = next((h for h in flow.hosts if h.name == where), None)
        ssh = f"{host.connections}/{host.sessions}" if host else ""
        rows.append(
            [where]
            + [f"{spent[s]:.2f}" if s in spent else "" for s in steps]
            + [f"{sum(spent.values()):.2f}", ssh, results.get(where, "")]
        )
    headers = ["host", *steps, "total", "ssh conn/sess", "result"]
    table = report.table(headers, rows, right=",".join([*steps, "total"]))
    built = flow.build.outputs if flow.build else None  # what BUILD_COMMAND did
    table += f"\n{built.describe()}" if built else ""
    table += f"\nswitch rounds: {describe_rounds(flow.rounds)}" if flow.rounds else ""
    for host in flow.hosts:
        seen = flow.at(host).canary
        table += f"\ncanary {host.name}: {seen.line()}" if seen else ""
    return table


def data(flow: Flow, error: BaseException | None = None) -> dict[str, object]:
    """The summary as JSON data: the command, then one object per host (docs/json.md)."""
    results = flow.results()
    return {
        "action": flow.action,
        "id": flow.id,
        "environment": flow.settings.environment,
        "ok": error is None,
        "error": "" if error is None else flow.output.clean(detail(error)),
        "release": flow.build.release if flow.build else "",
        "revision": flow.build.revision if flow.build else "",
        "ref": flow.options.ref,
        "seconds": round(time.monotonic() - flow.started, 3),
        "local": {"steps": seconds(flow, LOCAL_ROW)},
        "rounds": [list(names) for names in flow.rounds],
        "hosts": [
            {
                "host": host.name,
                "result": results.get(host.name, ""),
                "served_before": flow.at(host).served,
                "release": flow.at(host).release,
                "steps": seconds(flow, host.name),
                "ssh_connections": host.connections,
                "ssh_sessions": host.sessions,
                "probes": dict(flow.at(host).probes),
                "canary": canary.data() if (canary := flow.at(host).canary) else None,
            }
            for host in flow.hosts
        ],
    }


def seconds(flow: Flow, where: str) -> dict[str, float]:
    """Seconds per step of one row (a host, or the local steps), rounded to milliseconds."""
    return {name: round(spent, 3) for name, spent in flow.timings.get(where, {}).items()}


def save(flow: Flow, error: BaseException | None = None, *, final: bool = False) -> None:
    """Record this deploy on this machine (`tasks.engine.resume`): what ``--resume`` continues.
    Hosts of the resumed deploy this command left alone keep what the record said of them."""
    if flow.action != "deploy" or not flow.build or flow.untested:
        return
    found = data(flow, error)
    found["ok"] = final and error is None
    hosts = found["hosts"]
    assert isinstance(hosts, list)
    resumed = flow.options.resume
    if resumed:
        ours = {h.name for h in flow.hosts}
        hosts += [
            {"host": name, "result": flow.results().get(name, said)}
            for name, said in resumed.results.items()
            if name not in ours
        ]
    path = local_state(flow.settings).deploy_record
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(str(path), found)
