"""Hooks: a user's own steps before and after any step of a command, and when it fails.

A hook is attached to a named point, from a fabfile (a Python function) or from the
environment file (a shell command run on the hosts)::

    from fabdeploy import hooks, ns

    @hooks.before("switch", ns, once=True)
    def migrate(ctx):
        ctx.run(".venv/bin/python manage.py migrate")

``HOOK_BEFORE_SWITCH=once: .venv/bin/python manage.py migrate`` in ``config/<env>.env`` does
the same. Host points run on every host (in the new release's directory, as the app user,
with the app's secrets in the environment), or on the primary host only with ``once``
(`tasks.config.roles.primary`). Local
points run once, on this machine. A hook that fails stops the deploy as a failing stage would.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from invoke import Collection, Context
from invoke.runners import Result

from .. import config
from ..core.errors import FabdeployError
from ..core.paths import layout
from ..host import appenv

if TYPE_CHECKING:
    from ..config import Settings
    from ..core.output import Output
    from ..ssh.host import Host


#: Points the environment file can attach a command to (``HOOK_<POINT>``); ``failed`` runs
#: locally, the others on the hosts.
ENV_POINTS = config.HOOK_POINTS


#: A point's name: ``before_<step>``, ``after_<step>`` (steps and commands: `tasks.steps.lists`),
#: or ``failed``.
POINT = re.compile(r"^(before|after)_[a-z][a-z0-9_]*$|^failed$")


#: Runs a hook command with the app's secrets (``.env`` in the release) in its environment,
#: parsed (never sourced by a shell, so nothing in a value is executed).
@dataclass(frozen=True)
class Hook:
    """One attached action: a Python callable taking a `HookContext`, or a shell command."""

    point: str
    action: Callable[[HookContext], Any] | str
    once: bool = False

    @property
    def name(self) -> str:
        """How output refers to the hook."""
        if isinstance(self.action, str):
            return f"`{self.action}`"
        return getattr(self.action, "__name__", repr(self.action))


@dataclass
class HookContext:
    """What a hook gets: where it runs, the release, and `run` to run a command there."""

    point: str
    c: Context
    settings: Settings
    output: Output
    host: Host | None = None
    release: str = ""
    error: str = ""  # at ``failed``: why the command failed
    serving: dict[str, str] = field(default_factory=dict)  # at ``failed``: host -> its state

    @property
    def path(self) -> str:
        """The release's directory on the host ("" before upload and for local points)."""
        if not self.release:
            return ""
        return layout(self.settings).release(self.release)

    def say(self, text: str) -> None:
        """Print ``text``, prefixed with the host when there is one."""
        self.output.line(self.host.name if self.host else "", text)

    def run(self, command: str) -> Result:
        """Run ``command``: on the host in the release directory as the app user with the
        app's secrets in its environment and the release on PYTHONPATH (Ctrl-C ends it there:
        `appenv.run_bounded`), or locally for local points. Fails loudly."""
        if self.host is None:
            env = {}
            if self.point == "failed":
                serving = " ".join(f"{host}={what}" for host, what in self.serving.items())
                env = {"FABDEPLOY_ERROR": self.error, "FABDEPLOY_SERVING": serving}
            result = Context(config=self.c.config).run(
                command,
                warn=True,
                in_stream=False,
                env=env,  # added to fab's environment
            )
            if result.failed:
                raise FabdeployError(
                    f"hook {self.point}: `{command}` failed (exit {result.exited})"
                )
            return result
        where = self.path or layout(self.settings).root
        return appenv.run_bounded(
            self.host, where, command, venv=bool(self.path), label=f"hook {self.point} `{command}`"
        )


def _check_point(point: str) -> str:
    if not POINT.match(point):
        raise ValueError(
            f"not a hook point: {point!r}; points are before_<step>, after_<step> (a step of "
            "docs/architecture.md, or deploy, rollback, setup, release) and failed"
        )
    return point


def add(
    collection: Collection,
    point: str,
    action: Callable[[HookContext], Any] | str,
    *,
    once: bool = False,
) -> None:
    """Attach ``action`` to ``point`` for the tasks of ``collection`` (fabdeploy's ``ns``)."""
    _check_point(point)
    current = collection.configuration().get("fabdeploy", {}).get("hooks", {})
    hooks = {name: list(entries) for name, entries in current.items()}
    hooks.setdefault(point, []).append(Hook(point, action, once))
    collection.configure({"fabdeploy": {"hooks": hooks}})


def before(stage: str, collection: Collection, *, once: bool = False) -> Callable[[Any], Any]:
    """Decorator: run the function before ``stage`` (deploy, test, upload, switch, ...)."""

    def attach(function: Callable[[HookContext], Any]) -> Callable[[HookContext], Any]:
        add(collection, f"before_{stage}", function, once=once)
        return function

    return attach


def after(stage: str, collection: Collection, *, once: bool = False) -> Callable[[Any], Any]:
    """Decorator: run the function after ``stage`` (deploy, test, upload, switch, ...)."""

    def attach(function: Callable[[HookContext], Any]) -> Callable[[HookContext], Any]:
        add(collection, f"after_{stage}", function, once=once)
        return function

    return attach


def from_settings(settings: Settings, point: str) -> list[Hook]:
    """The hook the environment file attaches to ``point`` (``HOOK_<POINT>``), if any."""
    command = settings.hooks.get(point, "").strip()
    if not command:
        return []
    once = command.startswith("once:")
    return [Hook(point, command.removeprefix("once:").strip(), once)]


def attached(c: Context, settings: Settings, point: str) -> list[Hook]:
    """Every hook at ``point``: the fabfile's first, then the environment file's."""
    configured = config.state(c).get("hooks") or {}
    return [*configured.get(point, []), *from_settings(settings, point)]


def everything(c: Context, settings: Settings) -> list[Hook]:
    """Every hook attached, at any point."""
    configured = config.state(c).get("hooks") or {}
    found = [hook for hooks in configured.values() for hook in hooks]
    return found + [hook for point in ENV_POINTS for hook in from_settings(settings, point)]


def check_attached(
    c: Context, settings: Settings, local: tuple[str, ...], known: set[str] | None
) -> None:
    """Refuse, before anything runs, a hook at a point no command has (``known``: every
    command's points; None checks nothing of that) or a ``once`` hook at a local point."""
    for hook in everything(c, settings):
        if known is not None and hook.point not in known:
            close = difflib.get_close_matches(hook.point, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise FabdeployError(
                f"hook {hook.point} {hook.name}: no step has that point{hint}; points: "
                + ", ".join(sorted(known))
            )
        if hook.once and hook.point in local:
            raise FabdeployError(
                f"hook {hook.point} {hook.name}: {hook.point} runs once, locally, already: "
                "drop once=True"
            )


def run_local(c: Context, settings: Settings, output: Output, point: str) -> None:
    """Run the hooks of a local point, once."""
    for hook in attached(c, settings, point):
        output.say(f"hook {point}: {hook.name}")
        _call(hook, HookContext(point, c, settings, output))


def run_failed(
    c: Context, settings: Settings, output: Output, error: BaseException, serving: dict[str, str]
) -> None:
    """Run the ``failed`` hooks, locally, once: ``ctx.error`` says why, ``ctx.serving`` what
    each host serves (a shell command gets FABDEPLOY_ERROR and FABDEPLOY_SERVING). A failing
    ``failed`` hook is printed; the command's own error stands."""
    why = str(error) or type(error).__name__
    for hook in attached(c, settings, "failed"):
        output.say(f"hook failed: {hook.name}")
        ctx = HookContext("failed", c, settings, output, error=why, serving=dict(serving))
        try:
            _call(hook, ctx)
        except FabdeployError as exc:
            output.line("", str(exc), err=True)


def run_on(c: Context, host: Host, point: str, release: str = "", *, once: bool) -> None:
    """Run on ``host`` the hooks of a host point that are ``once`` hooks (or are not)."""
    for hook in attached(c, host.settings, point):
        if hook.once != once:
            continue
        host.say(f"hook {point}: {hook.name}" + (" (once)" if once else ""))
        _call(hook, HookContext(point, c, host.settings, host.output, host, release))


def _call(hook: Hook, ctx: HookContext) -> None:
    """Run one hook; any failure becomes a `FabdeployError` naming the hook and the host."""
    where = f"[{ctx.host.name}] " if ctx.host else ""
    try:
        if isinstance(hook.action, str):
            ctx.run(hook.action)
        else:
            hook.action(ctx)
    except FabdeployError:
        raise
    except Exception as exc:
        raise FabdeployError(f"{where}hook {hook.point} {hook.name} failed: {exc}") from exc
