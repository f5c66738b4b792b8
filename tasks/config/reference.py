"""The reference of the keys, rendered from their declaration: config/example.env and the
summary table of docs/configuration.md (tests keep both files equal to these)."""

from __future__ import annotations

from collections.abc import Sequence

from .key import Key
from .settings import KEYS


def example_env(keys: Sequence[Key] = KEYS) -> str:
    """The text of ``config/example.env``: every key with its default and its help line."""
    lines = [
        "# Every key fabdeploy reads from config/<environment>.env, with its default.",
        "# Copy the lines you need into config/<environment>.env (e.g. config/staging.env) and",
        "# select the environment with `fab staging deploy`; config/default.env is used when the",
        "# command line names none. Values are literal: ${VAR} is not expanded.",
        "# Regenerate with: python -c 'import tasks.config as c; print(c.example_env(), end=\"\")'",
        "",
    ]
    for key in keys:
        lines.append(f"# {key.help}" + (" (required)" if key.required else ""))
        lines.append(f"{key.name}={'myapp' if key.required else key.default}")
        lines.append("")
    lines += [
        "# Keys you name (NAME: letters, digits, '_'; the process or role is its lowercase):",
        "# PROCESS_<NAME>=command   a companion process (unit <app>-<name>.service), e.g.",
        "# PROCESS_WORKER=celery -A proj worker --loglevel=info",
        "# ROLE_<NAME>=host,host    the hosts of a role (a host may be in several), e.g.",
        "# ROLE_WEB=deploy@web1,deploy@web2",
        "# RUNS_<NAME>=web,worker   what a role runs (default: the process named like the role)",
    ]
    return "\n".join(lines).rstrip() + "\n"


def summary_table(keys: Sequence[Key] = KEYS) -> str:
    """The "Summary" table of docs/configuration.md: each key, linked to its ``### KEY``
    section, with its default and its help line."""
    lines = ["| Key | Default | Meaning |", "| --- | --- | --- |"]
    for key in keys:
        default = "required" if key.required else f"`{key.default}`" if key.default else "empty"
        meaning = key.help.replace("|", "\\|")
        lines.append(f"| [`{key.name}`](#{key.name.lower()}) | {default} | {meaning} |")
    return "\n".join(lines) + "\n"
