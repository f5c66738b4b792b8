"""A release on a host: the archives shipped to ``.incoming``, unpacked into
``releases/<name>`` with its venv and REVISION (``scripts/install.sh``), or removed: all of it
as the deploy user, whose releases/, venvs/ and .incoming are (the app user only reads them)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..build import lockfiles, packages
from ..build.archive import Venv, venv_contents, venv_digest
from ..core import shell
from ..core.errors import HostError
from ..core.paths import VENV_MARKER, layout
from . import linked

if TYPE_CHECKING:
    from ..build.archive import Build
    from ..ssh.host import Host
    from .facts import Facts


def facts_digest(build: Build, facts: Facts) -> str:
    """The venv key of this release on the host ``facts`` describe."""
    return venv_digest(venv_contents(build, facts.tags), facts.python, facts.tags)


def needs_packages(build: Build, facts: Facts) -> bool:
    """Whether the host ``facts`` describe needs the packages to build this release's venv."""
    return bool(build.packages) and facts_digest(build, facts) not in facts.venvs


def ship(host: Host, build: Build, facts: Facts) -> list[tuple[str, str]]:
    """Copy the source archive to ``.incoming``, and the packages archive of the host's tag
    set when it lacks the release's venv (`needs_packages`). Returns (remote path, sha256)
    pairs. One SFTP session; `install` checks and unpacks them."""
    paths = layout(host.settings)
    shipped = [(build.archive, build.sha256, f"{build.release}.tar.gz")]
    wanted = build.packages_for(facts.tags)
    if wanted is not None and needs_packages(build, facts):
        shipped.append((wanted.archive, wanted.sha256, f"{build.release}-packages.tar.gz"))
    elif wanted is not None:
        host.say("packages not shipped: the host has this release's venv")
    targets = []
    for local, digest, name in shipped:
        host.put(local, f"{paths.incoming}/{name}")
        targets.append((f"{paths.incoming}/{name}", digest))
    return targets


def install_program(
    host: Host, build: Build, facts: Facts, deploy_id: str = ""
) -> tuple[str, dict[str, object]]:
    """``scripts/install.sh`` and its env: the release's venv (reused, or built from the
    packages), its bytecode and its REVISION (naming the deploy ``deploy_id``)."""
    settings = host.settings
    paths = layout(settings)
    return shell.script_file("install.sh"), {
        "VENVS": paths.venvs,
        "DIGEST": facts_digest(build, facts),
        "MARKER": VENV_MARKER,
        "PREBUILT": packages.PREBUILT,
        "PREBUILT_BIN": packages.PREBUILT_BIN,
        "PINNED": packages.PINNED,
        "PYTHON": settings.python,
        "RELEASE": paths.release(build.release),
        "REQUIREMENTS": lockfiles.top(settings),
        "REQUIREMENTS_TEXT": build.host_requirements if settings.host_package_index else "",
        "REVISION_TEXT": build.revision_file(deploy_id=deploy_id),
        "INDEX_URL": settings.host_package_index,
    }


def install(
    host: Host,
    build: Build,
    facts: Facts,
    archives: list[tuple[str, str]],
    deploy_id: str = "",
) -> Venv:
    """In one session: verify the shipped ``archives``, remove leftovers of interrupted
    deploys (in ``.incoming``, half-made releases), unpack ``releases/<name>``, link .env (to
    /etc/<app>/env), then
    give it its venv and REVISION (`install_program`). LINKED_DIRS/FILES follow."""
    paths = layout(host.settings)
    body, env = install_program(host, build, facts, deploy_id)
    started = time.monotonic()
    result = host.script(
        shell.shell("unpack"),
        env={
            "ARCHIVES": "\n".join(f"{digest} {path}" for path, digest in archives),
            "INCOMING": paths.incoming,
            "CURRENT": paths.current,
            "RELEASES": paths.releases,
            "RELEASE": paths.release(build.release),
            "ENV_FILE": paths.env_file,
            "INSTALL_PROGRAM": shell.bash_text(body, env),
        },
        hide=True,
        label="install",
    )
    seconds = time.monotonic() - started
    lines = result.stdout.strip().splitlines()
    for line in lines:
        host.say(line)
    if linked.configured(host):  # shared/ data linked in before the smoke check
        made = linked.apply(host, build.release)
        host.say("linked shared/ paths" + ("" if made == "no change" else f"; {made}"))
    digest = str(env["DIGEST"])
    return Venv(digest, reused=any(line.endswith(" reused") for line in lines), seconds=seconds)


def remove_release(host: Host, name: str) -> None:
    """Delete ``releases/<name>`` unless `current` points to it."""
    paths = layout(host.settings)
    if not name or "/" in name or name.startswith("."):
        raise HostError(host.name, f"not a release name: {name!r}")
    host.script(
        shell.shell("remove-release"),
        env={"CURRENT": paths.current, "RELEASES": paths.releases, "NAME": name},
        hide=True,
        label="remove release",
    )
