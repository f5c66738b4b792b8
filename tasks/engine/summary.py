"""The end of a command: the summary table, the JSON summary, the record for ``--resume``,
every connection closed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..build import gitref
from ..core.report import write_json

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
            flow.say(flow.summary())
        try:
            flow.save(error, final=True)
        except OSError as exc:  # never hides how the deploy itself ended
            flow.output.line("", f"cannot record the deploy for --resume: {exc}", err=True)
        if flow.summary_json:
            try:
                write_json(flow.summary_json, flow.summary_data(error))
            except OSError as exc:  # never hides how the deploy itself ended
                flow.output.line(
                    "", f"--summary-json: cannot write {flow.summary_json}: {exc}", err=True
                )
        for host in flow.hosts:
            host.close()
