"""A host's facts before a deploy: its Python, wheel tags, what it serves and runs
(``scripts/facts.sh``, parsed by `parse_facts`)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..build import tags as build_tags
from ..config.project import fab_command
from ..core import kv, shell
from ..core.errors import FabdeployError, HostError
from ..core.paths import VENV_MARKER, layout, unit_file
from ..ssh import fanout
from . import sudoers

if TYPE_CHECKING:
    from ..build.tags import TagSet
    from ..config import Settings
    from ..ssh.host import Host


@dataclass(frozen=True)
class Facts:
    """What the deploy needs to know about a prepared host."""

    python: str  # `python -VV` and platform: part of the venv hash
    python_version: str  # "3.11"
    current: str  # release `current` points to ("" when none)
    tags: TagSet  # the wheel tags the host's Python accepts: part of the venv hash
    revision: str = ""  # the revision of that release (its REVISION file)
    content: str = ""  # what that release is made of (`tasks.build.content`; "" made before)
    running: bool = False  # the gunicorn master in the pidfile is alive
    venvs: tuple[str, ...] = ()  # digests of the complete venvs on the host
    app_group: str = ""  # the app user's group ("" when the user is missing)
    sudo_missing: tuple[int, ...] = ()  # the `sudoers.probes` sudo refused (their indexes)
    sudo_as_refused: bool = False  # sudo refused acting as the app user


def facts_program(host: Host, *, cached: bool = True) -> tuple[str, dict[str, object]]:
    """The script (``scripts/facts.sh``) and env that learn a host's `Facts`, asking sudo
    about the rights of `sudoers.probes` (``cached``: the answer "all allowed" is kept on
    the host while sudo's files are unchanged)."""
    settings = host.settings
    paths = layout(settings)
    facts_py, host_tags = shell.script_file("facts.py"), build_tags.script_text()
    asked = sudoers.probe_env(host)
    key = hashlib.sha256(repr(sorted(asked.items())).encode()).hexdigest()[:16]
    return shell.shell("facts"), {
        **asked,
        "SUDO_KEY": key if cached else "",
        "RELEASES": paths.releases,
        "VENVS": paths.venvs,
        "SHARED": paths.shared,
        "INCOMING": paths.incoming,
        "UNIT": unit_file(settings.app_name),
        "CONF": paths.gunicorn_conf,
        "LEGACY_CONF": paths.legacy_gunicorn_conf,
        "PYTHON": settings.python,
        "CURRENT": paths.current,
        "PIDFILE": paths.pidfile,
        "APP_USER": host.app_user,
        "SETUP": fab_command(settings, "setup"),
        "MARKER": VENV_MARKER,
        "HOST_TAGS": host_tags,
        "FACTS_PY": facts_py,
        "FACTS_KEY": hashlib.sha256(
            f"{settings.python}\0{facts_py}\0{host_tags}".encode()
        ).hexdigest()[:16],
    }


def read_facts(host: Host, *, cached: bool = True) -> Facts:
    """Refuse a host that was not set up; return its Python identity and current release
    (and what sudo refused: `facts_program`)."""
    body, env = facts_program(host, cached=cached)
    return parse_facts(host, host.script(body, env=env, hide=True, label="check").stdout)


def parse_facts(host: Host, text: str) -> Facts:
    """The `Facts` in the output of ``scripts/facts.sh``."""
    lines = text.strip().splitlines()
    if len(lines) < 3:
        raise HostError(host.name, f"check: unexpected answer {text!r}")
    identity, version = lines[0].strip() + " " + lines[1].strip(), lines[2].strip()
    rest = "\n".join(lines[3:])
    found = kv.parse(rest)
    try:
        host_tags = build_tags.parse(found.get("tags", ""))
    except ValueError as exc:
        raise HostError(
            host.name, f"check: cannot learn the wheel tags of {host.settings.python}: {exc}"
        ) from None
    return Facts(
        python=identity,
        python_version=version,
        current=found.get("current", ""),
        tags=host_tags,
        revision=found.get("revision", ""),
        content=found.get("content", ""),
        running=found.get("running") == "yes",
        venvs=tuple(line[5:] for line in lines[3:] if line.startswith("venv=")),
        app_group=found.get("app_group", ""),
        sudo_missing=tuple(
            int(line[13:]) for line in lines[3:] if re.fullmatch(r"sudo_missing=\d+", line)
        ),
        sudo_as_refused=found.get("sudo_as") == "refused",
    )


def wheel_tags(hosts: list[Host], settings: Settings) -> dict[str, TagSet]:
    """Each of ``hosts`` -> the wheel tags its Python accepts (learned by `read_facts`,
    PARALLEL at once)."""
    done = fanout.each(hosts, read_facts, settings.parallel)
    if done.failed:
        raise FabdeployError("; ".join(str(error) for error in done.failed.values()))
    return {host.name: facts.tags for host, facts in done.succeeded.items()}
