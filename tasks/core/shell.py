"""The remote scripts as text: the files in tasks/scripts/, lib.sh, and quoting values
into the environment a script reads (never formatted into shell)."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from pathlib import Path

#: The package's remote scripts and host-side Python files (``tasks/scripts/``), package data.
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


#: The library every shell script is sent with (`shell`): as_app, alive, current_release, kv,
#: healthy, probe, wait_healthy (docs/scripts.md).
LIBRARY = "lib.sh"


def script_file(name: str) -> str:
    """The text of ``tasks/scripts/<name>`` as it is (a ``.py`` file the host's Python runs)."""
    return (SCRIPTS / name).read_text(encoding="utf-8")


def library() -> str:
    """The text of ``scripts/lib.sh``: the shell functions every remote script may use."""
    return script_file(LIBRARY)


def shell(name: str) -> str:
    """The body `Host.script` runs for the remote script ``scripts/<name>.sh``: the library
    (`library`), then the script."""
    return library() + "\n" + script_file(f"{name}.sh")


def quote(value: object) -> str:
    """Quote ``value`` as one word for a POSIX shell."""
    return shlex.quote(str(value))


def bash_text(body: str, env: dict[str, object] | None = None, private: Iterable[str] = ()) -> str:
    """The bash program `Host.script` runs: strict mode, ``env`` quoted in, the ``private``
    variables read from stdin (`private_input`), then ``body``."""
    exports = "".join(f"{name}={quote(value)}\n" for name, value in (env or {}).items())
    reads = "".join(f"IFS= read -r -d '' {name}\n" for name in private)
    return f"set -euo pipefail\n{exports}{reads}{body}"


def private_input(values: dict[str, str]) -> str:
    """What a script's stdin carries for its ``private`` variables (`bash_text`): each value
    ended by NUL, in order. A value sent so is in no process's argv (``ps``, the journal's
    record of a sudo command), as values quoted into the script are: the deploy lock's token.
    A value holding NUL is refused."""
    if any("\0" in value for value in values.values()):
        raise ValueError("a private value may not hold NUL")
    return "".join(f"{value}\0" for value in values.values())
