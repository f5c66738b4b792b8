"""Host-prefixed output: whole lines only (parallel hosts never interleave mid-line),
secret values masked."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from typing import IO


class Output:
    """Where fabdeploy writes: one lock shared by every host's writer, secrets masked."""

    def __init__(
        self, out: IO[str] | None = None, err: IO[str] | None = None, mask: Iterable[str] = ()
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.lock = threading.Lock()
        self.mask = sorted({m for m in mask if len(m) >= 3}, key=len, reverse=True)

    def clean(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``."""
        for secret in self.mask:
            text = text.replace(secret, "***")
        return text

    def line(self, host: str, text: str, *, err: bool = False) -> None:
        """Write whole lines of ``text``, each prefixed with ``[host]``."""
        stream = self.err if err else self.out
        lines = self.clean(text).splitlines() or [""]
        with self.lock:
            for line in lines:
                stream.write(f"[{host}] {line}\n" if host else f"{line}\n")
            stream.flush()

    def say(self, text: str) -> None:
        """Write a line that belongs to no host."""
        self.line("", text)


class LineWriter:
    """A file-like stream for invoke's runner: buffers to whole lines, then `Output.line`."""

    def __init__(self, output: Output, host: str, *, err: bool = False) -> None:
        self.output = output
        self.host = host
        self.err = err
        self.buffer = ""

    def write(self, data: str) -> int:
        self.buffer += data
        if "\n" in self.buffer:
            whole, _, self.buffer = self.buffer.rpartition("\n")
            self.output.line(self.host, whole, err=self.err)
        return len(data)

    def flush(self) -> None:
        """Invoke flushes after every write; only `close` emits a partial last line."""

    def close(self) -> None:
        if self.buffer:
            self.output.line(self.host, self.buffer, err=self.err)
            self.buffer = ""
