"""One SSH connection per host per ``fab`` command: the hosts a command works on (the
environment's, ``-H``, ``--roles``), their `Host` objects, shared by every task of the command."""

from __future__ import annotations

import contextlib
import os
import sys
import weakref
from typing import TYPE_CHECKING

from fabric import Connection
from invoke.context import Context

from .. import config
from ..config import roles as role_hosts
from ..core.errors import ConfigError, FabdeployError
from ..core.output import Output
from .host import Host, connection, given_host
from .hostkeys import apply_host_key_policy

if TYPE_CHECKING:
    from ..config import Settings


def target_hosts(c: Context, settings: Settings) -> list[str]:
    """The host strings this command runs on: the one -H gave ``c``, else HOSTS."""
    if isinstance(c, Connection):
        return [given_host(c)]
    if not settings.hosts:
        raise FabdeployError(f"no hosts: set HOSTS in {settings.source} or pass -H host[,host...]")
    return list(settings.hosts)


class Command:
    """What the tasks of one ``fab`` command share: one `Host` (one SSH connection) per host
    string and environment, closed when the command ends, and how far a fleet got.

    Fabric runs a command's tasks one after the other (with -H, once per host, each with a
    fresh `Connection` that fabdeploy never opens); ``fab staging setup deploy`` connects to
    each host once. It lives in the invoke config (`command`), which Fabric hands every task
    of the command.
    """

    def __init__(self) -> None:
        self.hosts: dict[tuple[str, str], Host] = {}
        #: -H calls still to come of the task whose first call ran the whole fleet.
        self.fleet_covers = 0
        # at exit, or when no task can reach this object any more (a script's own Context)
        weakref.finalize(self, disconnect, self.hosts)

    def __copy__(self) -> Command:
        return self  # invoke copies config values at every merge: keep the one object

    def __deepcopy__(self, memo: dict[int, object]) -> Command:
        return self

    def host(self, c: Context, name: str, settings: Settings, output: Output) -> Host:
        """The shared `Host` for ``name`` in ``settings``'s environment, this task's
        ``output`` and settings in place."""
        key = (str(settings.source), name)
        found = self.hosts.get(key)
        if found is None:
            found = self.hosts[key] = Host(connection(c, name, settings), settings, output)
            found.shared = True
        found.settings, found.output = settings, output
        return found

    def close(self) -> None:
        """Close every connection (the command ended)."""
        disconnect(self.hosts)


def disconnect(hosts: dict[tuple[str, str], Host]) -> None:
    """Close the connections of ``hosts`` and forget them."""
    for host in hosts.values():
        with contextlib.suppress(Exception):  # at exit: nothing is left to report it to
            host.disconnect()
    hosts.clear()


def command(c: Context) -> Command:
    """This ``fab`` command's `Command`, made by its first task."""
    state = config.state(c)
    if state.get("command") is None:
        state["command"] = Command()
    return state["command"]


def hosts(
    c: Context,
    settings: Settings,
    output: Output | None = None,
    *,
    trust: bool = False,
    names: list[str] | None = None,
) -> list[Host]:
    """`Host` objects for ``names`` (default: this command's hosts), host key policy applied;
    a host an earlier task of this ``fab`` command connected to keeps its connection."""
    output = output or Output(mask=settings.secrets.values())
    shared = command(c)
    result = []
    for name in dict.fromkeys(target_hosts(c, settings) if names is None else names):
        host = shared.host(c, name, settings, output)
        apply_host_key_policy(host.conn, settings, output, trust=trust)
        result.append(host)
    return result


def fab_hosts() -> list[str]:
    """Every host given to the running ``fab`` with -H/--hosts, in order ([] without -H, or
    when no ``fab`` command is running, e.g. a task called from Python).

    No task, `Connection` or config value carries them: Fabric's Executor reads them from
    the parsed core arguments of the program the ``fab`` script (and ``python -m fabric``)
    runs, ``fabric.main.program``, whose `Program.args` is public. Checked with Fabric 3.2.3
    and invoke 2.2.1; the one place fabdeploy asks.
    """
    from fabric import main

    try:
        value = main.program.args.hosts.value
    except (TypeError, AttributeError, KeyError):  # that program parsed no command line
        return []
    return [part for part in str(value or "").split(",") if part]


def check_key_file(settings: Settings) -> None:
    """SSH_KEY, when set, names a readable file: checked before any connection is opened."""
    key = settings.ssh_key
    if key and not (os.path.isfile(key) and os.access(key, os.R_OK)):
        what = "is not readable" if os.path.isfile(key) else "not found"
        raise ConfigError(f"{settings.where('SSH_KEY')}: key file {key} {what}")


def session(
    c: Context,
    *,
    trust: bool = False,
    fleet: bool = False,
    data_on_stdout: bool = False,
    roles: str = "",
) -> tuple[Settings, list[Host]]:
    """Load this command's settings, then its hosts with host keys checked (nothing opened yet).

    With ``data_on_stdout`` (``--json``) everything the hosts' output says goes to stderr, so
    stdout holds only the document the task prints.

    With ``fleet`` under ``fab -H a,b``, the task's first per-host call gets every -H host at
    once and its later calls get none (Fabric calls the task once per host, one call after the
    other; the fleet already covered them). The next task's first call starts its own fleet.

    ``roles`` (``--roles web,worker``) keeps the hosts that have one of those roles
    (`tasks.config.roles`).
    """
    settings = config.load(c)
    check_key_file(settings)
    mask = settings.secrets.values()
    output = Output(sys.stderr, sys.stderr, mask=mask) if data_on_stdout else Output(mask=mask)
    if fleet and isinstance(c, Connection):
        shared = command(c)
        if shared.fleet_covers:  # a later -H call of the task whose first call ran the fleet
            shared.fleet_covers -= 1
            return settings, []
        given = fab_hosts()
        shared.fleet_covers = max(len(given) - 1, 0)
        names = role_hosts.select(settings, given or target_hosts(c, settings), roles)
        return settings, hosts(c, settings, output, trust=trust, names=names)
    names = role_hosts.select(settings, target_hosts(c, settings), roles)
    return settings, hosts(c, settings, output, trust=trust, names=names)
