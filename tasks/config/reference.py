"""The reference of the keys: config/example.env, generated from the declaration."""

from __future__ import annotations

from .settings import KEYS


def example_env() -> str:
    """The text of ``config/example.env``: every key with its default and its help line."""
    lines = [
        "# Every key fabdeploy reads from config/<environment>.env, with its default.",
        "# Copy the lines you need into config/<environment>.env (e.g. config/staging.env) and",
        "# select the environment with `fab staging deploy`; config/default.env is used when the",
        "# command line names none. Values are literal: ${VAR} is not expanded.",
        "# Regenerate with: python -c 'import tasks.config as c; print(c.example_env(), end=\"\")'",
        "",
    ]
    for key in KEYS:
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
