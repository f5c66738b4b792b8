"""The app's web service on a host: the zero-downtime switch, start, stop, restart and
reload, and the one rule of health.

The zero-downtime switch is gunicorn's USR2 re-exec handshake. The unit starts
``<root>/current/.venv/bin/python -m gunicorn`` with ``chdir = <root>/current``, paths not
resolved, so a master re-exec'd by USR2 loads the release `current` points to at that moment,
with that release's venv. `switch` (one script, one round trip, run on the host detached from
the SSH session: a fab killed at any moment leaves the switch to finish, or go back, by itself):

1. points `current` at the new release (``ln -sfn`` to a temporary link renamed over it);
2. sends USR2 to the running master and waits for the new master (gunicorn >= 20 writes its pid
   to ``gunicorn.pid.2`` until the old one exits) to have WORKERS *ready* workers: each
   worker, once it has loaded the app and can answer, writes ``shared/pids/ready.<pid>.<start
   time>`` (gunicorn.conf.py's ``post_worker_init``; the old workers serve meanwhile, for up
   to `ready_timeout` seconds);
3. sends WINCH to the old master, which stops its workers gracefully and keeps listening fds
   open, and waits until those workers are gone: from then on only the new release's workers
   accept, so the health check tests it (an old worker that has not yet handled the signal
   could otherwise answer for the new release);
4. health-checks `health_url` (BIND's address, 127.0.0.1 for a wildcard; bash's /dev/tcp);
5. writes the new pid into the PIDFile (systemd re-reads it when the old main process exits,
   so it keeps tracking the service) and sends TERM to the old master, waiting for it to exit.

A failure before 5 puts `current` back, HUPs the old master (its new workers load the old
release again) and waits until they are ready, then TERMs the new master: requests never lack
a worker. A gunicorn.conf.py rendered before the ready markers existed makes the switch count
forked workers instead, and say so.
With no master running (first deploy) it starts the service and health-checks it instead; on
failure it stops it and puts `current` back as it was.

The switch is ``scripts/switch.sh`` (docs/scripts.md), tested under local bash with fake
masters in tests/unit/test_switch_script.py.

Functions other modules compose: `switch(host, release)`, `current_release(host)`,
`master_pid(host)`, `health(host)`, `healthy(status)` (the one rule: 200), `start(host)`,
`stop(host)`, `restart(host)`, `health_url(settings)`, and `health_env(settings)` for
scripts that wait for a port's health themselves (lib.sh's ``wait_healthy``).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import WEB, roles
from ..core import kv, shell
from ..core.clock import release_name
from ..core.errors import HostError
from ..core.paths import layout
from . import processes
from . import units as host_units

if TYPE_CHECKING:
    from ..config import Settings
    from ..ssh.host import Host


#: How many lines of shared/log/error.log a failed switch or start prints.
LOG_TAIL = 30


#: Seconds a switch waits for an interrupted one still running on the host to end.
DETACHED_WAIT = 600


#: Seconds a release may keep answering the health path with another status than 200.
ANSWER_GRACE = 5


#: The text in gunicorn.conf.py (tasks/templates) that says its workers write ready markers.
READY_HOOK = "fabdeploy-ready-markers"


#: The one rule of health (docs/scripts.md): the health path answering HTTP 200 is healthy,
#: any other status (or none) is not. lib.sh's ``healthy`` is the same rule for the scripts.
HEALTHY_STATUS = 200


def healthy(status: object) -> bool:
    """Whether an HTTP status (an int, or a script's text such as ``"200"``) is healthy."""
    return str(status).strip() == str(HEALTHY_STATUS)


def failing(status: object) -> bool:
    """Whether a probe of CANARY_URLS fails with this HTTP status: a 5xx, or no answer
    (``000``); a redirect or a 4xx does not. lib.sh's ``failing`` is the same rule."""
    text = str(status).strip()
    return text == "000" or (len(text) == 3 and text.startswith("5") and text.isdigit())


#: Addresses gunicorn may bind that mean "every interface": a probe connects to `LOOPBACK`.
WILDCARDS = frozenset({"0.0.0.0", "::", "[::]", "*", ""})

#: Where a probe on the host connects for a wildcard bind, IPv6's ``[::]`` included: on Linux
#: an IPv6 wildcard socket takes IPv4 connections too unless it is v6only (gunicorn never sets
#: IPV6_V6ONLY; net.ipv6.bindv6only is 0 unless an admin changed it), and 127.0.0.1 answers
#: where IPv6 is disabled (no ::1 on lo) while the bind to ``[::]`` still works. One address
#: for every wildcard, the one a Host check such as Django's ALLOWED_HOSTS most often lists.
LOOPBACK = "127.0.0.1"


def probe_address(bind: str) -> str:
    """The address a probe on the host connects to for gunicorn's ``bind`` (HOST:PORT): the
    bound address (an IPv6 one without brackets), or `LOOPBACK` for a wildcard."""
    address = bind.rpartition(":")[0]
    return LOOPBACK if address in WILDCARDS else address.strip("[]")


def probe_netloc(settings: Settings, port: int | None = None) -> str:
    """``host:port`` a probe on the host connects to (an IPv6 address in brackets): BIND's
    port, or ``port``."""
    address = probe_address(settings.bind)
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port or settings.port}"


def health_url(settings: Settings, port: int | None = None) -> str:
    """The URL of the health path as seen from the host itself (`probe_netloc`)."""
    return f"http://{probe_netloc(settings, port)}{settings.health_path}"


def health_env(settings: Settings) -> dict[str, object]:
    """The ``env`` lib.sh's ``wait_healthy`` needs (HEALTH_HOST: the Host header ``probe``
    sends), and the Python a script may pick a port with."""
    return {
        "PROBE_PYTHON": settings.python,
        "ANSWER_GRACE": min(ANSWER_GRACE, settings.health_timeout),
        "HEALTH_HOST": settings.health_host,
    }


def host_header(settings: Settings, url: str) -> str:
    """The Host header a probe of ``url`` sends: HEALTH_HOST, else the URL's ``host:port``."""
    return settings.health_host or url.removeprefix("http://").partition("/")[0]


def refused_host(settings: Settings, status: object, sent: str) -> str:
    """Why the health path may answer HTTP 400 (the Host header ``sent``, which the app may not
    accept), naming HEALTH_HOST; "" for any other status."""
    if str(status).strip() != "400":
        return ""
    return (
        f"HTTP 400 often means the app refused the probe's Host header ({sent}), as Django does "
        f"for a host not in ALLOWED_HOSTS: set HEALTH_HOST in {settings.source} to a host name "
        "the app accepts (docs/configuration.md#health_host), or let the app accept that one"
    )


def refused_in(settings: Settings, text: str, sent: str) -> str:
    """`refused_host` for a script's output that says ``<url> answered 400``."""
    found = re.search(r"http://\S+ answered (\d{3})", text)
    return refused_host(settings, found.group(1), sent) if found else ""


def ready_timeout(settings: Settings) -> int:
    """Seconds a switch waits for the new master's workers to be ready: the larger of
    HEALTH_TIMEOUT and WORKER_TIMEOUT. The old workers serve meanwhile, so waiting costs no
    request; an app allowed WORKER_TIMEOUT seconds per request may load that slowly too."""
    return max(settings.health_timeout, settings.worker_timeout)


@dataclass(frozen=True)
class Switched:
    """What a switch did on one host."""

    release: str  # the release now served
    previous: str  # the release served before ("" when none)
    started: bool  # True: the service was not running and was started
    probes: dict[str, str] = field(default_factory=dict)  # URL -> status, right after health
    access_from: int | None = None  # the access log's size when only the new release served


def _switch_env(host: Host, target: str, probes: list[str], access_log: bool) -> dict[str, object]:
    settings = host.settings
    paths = layout(settings)
    return {
        "PROBE_URLS": "\n".join(probes),
        "ACCESS_LOG": paths.access_log if access_log else "",
        **health_env(settings),
        "APP_USER": host.app_user,
        "ROOT": paths.root,
        "CURRENT": paths.current,
        "TMP_LINK": paths.current_tmp,
        "PIDFILE": paths.pidfile,
        "ERROR_LOG": paths.error_log,
        "SERVICE": host_units.service_unit(settings),
        "URL": health_url(settings),
        "WORKERS": settings.workers,
        "CONF": paths.gunicorn_conf,
        "READY_HOOK": READY_HOOK,
        "TIMEOUT": settings.health_timeout,
        "READY_TIMEOUT": ready_timeout(settings),
        "GRACE": max(10, settings.health_timeout),
        "TAIL": LOG_TAIL,
        "NEW_TARGET": target,
    }


def detached(host: Host, body: str, env: dict[str, object]) -> dict[str, object]:
    """The ``env`` of ``scripts/detach.sh`` running ``body`` (with ``env`` in it) detached
    from the SSH session, so that a lost session never stops it half-way (``env`` is passed
    along as well: it is what the switch is given)."""
    return {
        **env,
        "DIR": layout(host.settings).switch_runs,
        "ID": f"{release_name()}-{secrets.token_hex(3)}",
        "WAIT": DETACHED_WAIT,
        "BODY": shell.bash_text(body, env),
    }


def switch(
    host: Host,
    release: str | None = None,
    before: str | None = None,
    setup_files: tuple[str, dict[str, object]] | None = None,
    probes: list[str] | None = None,
    access_log: bool = False,
) -> Switched:
    """Serve ``release`` (None: whatever `current` points to) without dropping a request.

    The switch runs on the host detached from the SSH session (``scripts/detach.sh``): if
    fab dies or the link drops, the switch still runs to its end, or back to the old release,
    on its own, so `current` always names the release the host serves. A switch started while
    an interrupted one still runs waits for it.

    ``before``, the release served now, when the caller knows it (saves a round trip).
    ``setup_files``: ``scripts/converge.sh`` and its env (`tasks.host.converge.script`), run first
    in the switch's body: setup's files change just before the re-exec that reads them, and
    go back if the switch fails. ``probes``: URLs requested once the health check passed
    (`tasks.host.canary`), a 5xx or no answer failing the switch as a failed health check
    does; ``access_log``: learn where the access log's lines of the new release begin.

    Raises `HostError` when the new release does not become healthy; the host then serves
    what it served before, and the last lines of the error log have been printed.
    """
    target = f"releases/{release}" if release else ""
    before = current_release(host) if before is None else before  # a deploy knows it already
    body, env = shell.shell("switch"), _switch_env(host, target, probes or [], access_log)
    if setup_files:
        first, first_env = setup_files
        body, env = (
            shell.library() + "\n" + first + "\n" + shell.script_file("switch.sh"),
            {
                **first_env,
                **env,
            },
        )
    result = host.script(
        shell.shell("detach"),
        env=detached(host, body, env),
        warn=True,
        label="switch",
    )
    if result.failed:
        what = f"release {release}" if release else "the current release"
        sent = host_header(host.settings, health_url(host.settings))
        why = refused_in(host.settings, result.stdout, sent)  # the detached run's log
        bad = [f"probe {url} answered {code} (CANARY_URLS)"
               for url, code in probed(result.stdout).items() if failing(code)]  # fmt: skip
        why = "; ".join([*bad, why] if why else bad)
        raise HostError(
            host.name,
            f"switch to {what} failed; still serving {before or 'nothing'}"
            + (f". {why}" if why else ""),
        )
    mark = re.search(r"^new release's requests: .* from byte (\d+)$", result.stdout, re.M)
    return Switched(
        release=release or before,
        previous=before,
        started="started " in result.stdout,
        probes=probed(result.stdout),
        access_from=int(mark.group(1)) if mark else None,
    )


def probed(text: str) -> dict[str, str]:
    """URL -> status of each ``probe <url> answered <status>`` line of a switch's output."""
    return dict(re.findall(r"^probe (\S+) answered (\d{3})$", text, re.M))


def current_release(host: Host) -> str:
    """The release `current` points to ("" when none): the one way Python asks (lib.sh's
    ``current_release`` is the scripts' one)."""
    result = host.script(
        shell.shell("current"),
        env={"CURRENT": layout(host.settings).current},
        hide=True,
        label="current release",
    )
    return kv.parse(result.stdout).get("current", "")


def master_pid(host: Host) -> int | None:
    """The live gunicorn master's pid from the PIDFile (None: not running)."""
    result = host.script(
        shell.shell("master"),
        env={"PIDFILE": layout(host.settings).pidfile, "APP_USER": host.app_user},
        hide=True,
        label="read pidfile",
    )
    text = kv.parse(result.stdout).get("pid", "")
    return int(text) if text.isdigit() else None


def health(host: Host) -> tuple[bool, str]:
    """Probe the health path once on the host; (healthy, HTTP status)."""
    result = host.script(
        shell.shell("health"),
        env={"URL": health_url(host.settings), "HEALTH_HOST": host.settings.health_host},
        hide=True,
        label="health",
    )
    code = kv.parse(result.stdout).get("status", "")
    return healthy(code), code


def _systemctl(host: Host, verb: str, process: str = "") -> list[str]:
    """``systemctl VERB`` the web service, or ``process`` (a companion process, `WEB`, or
    ``all``: the web service and every companion process the host runs); returns the units."""
    settings, units = host.settings, []
    if process in ("", WEB) or (process == "all" and roles.serves_web(settings, host.name)):
        host.run(
            f"systemctl {verb} -- {shell.quote(host_units.service_unit(settings))}",
            sudo=True,
            label=verb,
        )
        units.append(host_units.service_unit(settings))
    if process not in ("", WEB):  # a companion stops gracefully; a start must stay up
        units += processes.control(host, verb, "" if process == "all" else process)
    return units


def start(host: Host, process: str = "") -> None:
    """``systemctl start`` the app's service (or ``process``)."""
    host.say(f"started {', '.join(_systemctl(host, 'start', process)) or 'nothing here'}")


def stop(host: Host, process: str = "") -> None:
    """``systemctl stop`` the app's service (or ``process``)."""
    host.say(f"stopped {', '.join(_systemctl(host, 'stop', process)) or 'nothing here'}")


def restart(host: Host, process: str = "") -> None:
    """``systemctl restart`` the app's service (requests fail while it restarts), or
    ``process`` (gracefully: TERM, up to STOP_TIMEOUT, then KILL)."""
    host.say(f"restarted {', '.join(_systemctl(host, 'restart', process)) or 'nothing here'}")


def reload_host(host: Host) -> None:
    """`switch` onto `current` where the host runs the web process; elsewhere nothing."""
    if roles.serves_web(host.settings, host.name):
        switch(host, None)
    else:
        host.say("reload: no web process on this host (its roles run none)")
