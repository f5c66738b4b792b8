"""Host-prefixed output: whole lines only (parallel hosts never interleave mid-line),
secret values masked."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from typing import IO


def masked_values(values: Iterable[str]) -> list[str]:
    """What `Output` replaces with ``***``: each value of 3 or more characters and, of a value
    over several lines (a PEM key), each line of 3 or more (output split into lines may
    show one line of it alone); the longest first."""
    found = {value for value in values if len(value) >= 3}
    for value in list(found):
        lines = value.splitlines()
        found.update(line for line in lines if len(lines) > 1 and len(line.strip()) >= 3)
    return sorted(found, key=len, reverse=True)


class Output:
    """Where fabdeploy writes: one lock shared by every host's writer, secrets masked."""

    def __init__(
        self, out: IO[str] | None = None, err: IO[str] | None = None, mask: Iterable[str] = ()
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.lock = threading.Lock()
        self.mask = masked_values(mask)

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


class MaskedStream:
    """A terminal's output stream with secret values masked as the text passes (``fab exec
    --pty``, whose output is written as it comes, not in lines).

    Text that could be the start of a secret is held back until more text shows whether it
    is one, or for at most ``hold`` seconds (an interactive program waits for a key after a
    prompt): then it is written as it is. So a secret is masked when the remote program
    writes it at once (in any number of network packets less than ``hold`` apart) and shows
    when its characters come further apart than that, e.g. as you type it and the terminal
    echoes it.
    """

    def __init__(self, stream: IO[str], mask: Iterable[str], hold: float = 0.2) -> None:
        self.stream = stream
        self.mask = masked_values(mask)
        self.hold = hold
        self.pending = ""
        self.lock = threading.Lock()
        self.timer: threading.Timer | None = None

    def write(self, data: str) -> int:
        with self.lock:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            text = self.pending + data
            for secret in self.mask:
                text = text.replace(secret, "***")
            keep = self.held(text)
            self.pending = text[len(text) - keep :] if keep else ""
            self.stream.write(text[: len(text) - keep])
            self.stream.flush()
            if self.pending:
                self.timer = threading.Timer(self.hold, self.release)
                self.timer.daemon = True
                self.timer.start()
        return len(data)

    def held(self, text: str) -> int:
        """How many characters at the end of ``text`` begin some secret (0: none)."""
        return max(
            (
                size
                for secret in self.mask
                for size in range(1, min(len(secret) - 1, len(text)) + 1)
                if text.endswith(secret[:size])
            ),
            default=0,
        )

    def release(self) -> None:
        """Write what is held back (the secret it might have begun did not follow)."""
        with self.lock:
            self.timer = None
            if self.pending:
                self.stream.write(self.pending)
                self.pending = ""
                self.stream.flush()

    def flush(self) -> None:
        """Held-back text stays held: it is written by `write`, `release` or `close`."""

    def close(self) -> None:
        """The command ended: write what is held back."""
        with self.lock:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
        self.release()
