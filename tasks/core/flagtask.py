"""An invoke `Task` whose options take short flags of our choosing."""

from __future__ import annotations

from typing import Any

from invoke import Task
from invoke.parser import Argument


class FlagTask(Task):
    """A task whose options may be given short flags of our choosing (``short={"lines": "n"}``)."""

    def __init__(self, *args: Any, short: dict[str, str] | None = None, **kwargs: Any) -> None:
        self.short = dict(short or {})
        super().__init__(*args, **kwargs)

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        args = super().get_arguments(ignore_unknown_help)
        wanted = set(self.short.values())
        for arg in args:
            long_name = arg.names[0]
            chosen = self.short.get(arg.name) or self.short.get(long_name)
            shorts = [n for n in arg.names[1:] if n not in wanted]
            arg.names = (long_name, chosen) if chosen else (long_name, *shorts)
        return args
