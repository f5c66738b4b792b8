"""A strict `sudo` for the unit tests that run the remote scripts with the local bash.

It runs a command as root only when the command is one of the rights `tasks.host.sudoers`
declares, matched as sudo matches a sudoers line (the words joined by spaces, a `Glob` as its
pattern, everything else literally); ``sudo -n -l CMD`` answers the same way; anything runs
as another user (``-u USER``: the rule's ``ALL=(<APP_USER>) ALL``). Every call is logged,
refusals as ``REFUSED <command line>``. The commands run here as this user, with stand-ins on
PATH for what needs root or a system: `install` and `chown` keep their owner only for root
(`chown` else only logs), `systemctl` and `journalctl` log their arguments (``systemctl show``
answers a running unit: ``MainPID`` 123, ``NRestarts`` 0, ``ActiveState`` from the file
``unit-state``, active by default).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tasks.core import shell
from tasks.host.sudoers import Glob, Right

SUDO = """#!/bin/bash
[ "$1" = -n ] || { echo "sudo: without -n" >&2; exit 1; }
shift
list=no
if [ "$1" = -l ]; then list=yes; shift; fi
user=root
if [ "$1" = -u ]; then user=$2; shift 2; fi
[ "$1" != -- ] || shift
if [ "$user" = root ]; then
  allowed=no
  while IFS= read -r pattern; do
    # shellcheck disable=SC2053
    if [[ "$*" == $pattern ]]; then allowed=yes; break; fi
  done < @PATTERNS@
  if [ $allowed = no ]; then
    printf 'REFUSED %s\\n' "$*" >> @LOG@
    [ $list = yes ] || echo "sudo: a password is required" >&2
    exit 1
  fi
fi
if [ $list = yes ]; then printf '%s -l %s\\n' "$user" "$*" >> @LOG@; exit 0; fi
printf '%s %s\\n' "$user" "$*" >> @LOG@
exec "$@"
"""

STANDINS = {
    "install": """#!/bin/bash
[ "$(id -u)" = 0 ] && exec /usr/bin/install "$@"
args=()
while [ $# -gt 0 ]; do case $1 in -o|-g) shift 2;; *) args+=("$1"); shift;; esac; done
exec /usr/bin/install "${args[@]}"
""",
    "chown": """#!/bin/bash
echo "chown $*" >> @TOOLS@
[ "$(id -u)" != 0 ] || exec /usr/bin/chown "$@"
""",
    "systemctl": """#!/bin/bash
echo "systemctl $*" >> @TOOLS@
case "$*" in
  *MainPID*) echo 123 ;;
  *NRestarts*) echo 0 ;;
  *ActiveState*) cat @STATE@ 2>/dev/null || echo active ;;
  is-enabled*) echo disabled ;;
esac
""",
    "journalctl": """#!/bin/bash
echo "journalctl $*" >> @TOOLS@
echo "a journal line"
""",
}


def pattern(right: Right) -> str:
    """``right`` as a bash pattern of ``"$*"``: its words joined by spaces, a `Glob` as it
    is, every other word literally."""
    words = [right.command]
    for word in right.args:
        words.append(word.pattern if isinstance(word, Glob) else re.sub(r"([][*?\\])", r"\\\1", word))  # fmt: skip
    return " ".join(words)


@dataclass
class Sudo:
    """The strict sudo and its stand-ins in ``bin``; what it ran or refused in ``log``, what
    the stand-ins were asked in ``tools``."""

    bin: Path
    log: Path
    tools: Path
    state: Path

    @classmethod
    def make(cls, where: Path, rights: list[Right]) -> Sudo:
        """The fakes in ``where/bin``, allowing exactly ``rights`` as root."""
        bin_ = where / "bin"
        bin_.mkdir(parents=True, exist_ok=True)
        found = cls(bin_, where / "sudo.log", where / "tools.log", where / "unit-state")
        patterns = where / "sudo.patterns"
        patterns.write_text("".join(pattern(right) + "\n" for right in rights))
        values = {"@PATTERNS@": patterns, "@LOG@": found.log, "@TOOLS@": found.tools, "@STATE@": found.state}  # fmt: skip
        for name, text in {"sudo": SUDO, **STANDINS}.items():
            for key, value in values.items():
                text = text.replace(key, shlex.quote(str(value)))
            (bin_ / name).write_text(text)
            (bin_ / name).chmod(0o755)
        return found

    def run(self, name: str, env: dict[str, object], *, library: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """``scripts/<name>.sh`` (with lib.sh) run by bash with ``env``, the fakes first on PATH."""
        body = shell.shell(name) if library else shell.script_file(f"{name}.sh")
        path = f"{self.bin}:{os.environ['PATH']}"
        return subprocess.run(
            ["bash", "-c", shell.bash_text(body, env)],
            env={**os.environ, "PATH": path, "HOME": str(self.bin.parent / "home")},
            capture_output=True,
            text=True,
            check=False,
        )

    def calls(self) -> list[str]:
        """Every call: ``<user> [-l ]<command line>``, or ``REFUSED <command line>``."""
        return self.log.read_text().splitlines() if self.log.exists() else []

    def refused(self) -> list[str]:
        """The command lines it refused."""
        return [line[8:] for line in self.calls() if line.startswith("REFUSED ")]

    def as_root(self) -> list[str]:
        """The command lines it ran as root (not those it was asked about with -l)."""
        return [line[5:] for line in self.calls() if line.startswith("root ") and not line.startswith("root -l ")]  # fmt: skip
