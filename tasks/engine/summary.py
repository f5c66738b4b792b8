"""The end of a command: the summary table, the JSON summary, the record for ``--resume``,
every connection closed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..build import gitref
from ..core.report import write_json

if TYPE_CHECKING:
    from .flow import Run


@contextmanager
def reported(run_: Run, *, table: bool = True) -> Iterator[Run]:
    """Print the summary table (``table``) and close every connection when the command ends."""
    error: BaseException | None = None
    try:
        yield run_
    except BaseException as exc:
        error = exc
        raise
    finally:
        if run_.build:
            run_.build.cleanup()
        gitref.remove(run_.settings)  # the export of `deploy --ref`
        if run_.timings and table:
            run_.say(run_.summary())
        try:
            run_.save(error, final=True)
        except OSError as exc:  # never hides how the deploy itself ended
            run_.output.line("", f"cannot record the deploy for --resume: {exc}", err=True)
        if run_.summary_json:
            try:
                write_json(run_.summary_json, run_.summary_data(error))
            except OSError as exc:  # never hides how the deploy itself ended
                run_.output.line(
                    "", f"--summary-json: cannot write {run_.summary_json}: {exc}", err=True
                )
        for host in run_.hosts:
            host.close()
