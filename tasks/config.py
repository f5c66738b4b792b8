"""Env files -> one validated, typed `Settings` object.

This module is the only reader of ``config/<environment>.env`` files and of the app's
secrets file. Every other module receives a `Settings` (or the `Secrets` inside it)
from `load`; none reads the environment or the files on its own.

Values are read with python-dotenv without interpolation: ``${VAR}`` in a file stays
literal, so nothing from the developer's shell leaks into a server.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dotenv.parser import parse_stream
from invoke.context import Context
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from .core import secretsfile
from .core.errors import ConfigError

#: The environment used when the command line names none.
DEFAULT_ENVIRONMENT = "default"


#: Env files in the config dir that are documentation, not deploy targets.
NOT_ENVIRONMENTS = frozenset({"example"})


#: The hook points an environment file attaches a command to (``HOOK_<POINT>``).
HOOK_POINTS = ("after_upload", "before_switch", "after_switch", "failed")


_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


_HOST = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.:_\[\]-]+?)(?::(?P<port>\d+))?$"
)


_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]{0,31}\$?$")


#: Characters a path sent to the hosts may hold: nothing a shell or systemd would interpret.
_PATH_CHARS = re.compile(r"^[A-Za-z0-9._%+@=,/-]+$")


_COMMAND_NAME = re.compile(r"^[A-Za-z0-9._+-]+$")


_ADDRESS = re.compile(r"^[A-Za-z0-9.*:\[\]_-]*$")


#: What a URL path may hold (RFC 3986 characters; no quotes, backslash, backtick or spaces).
_URL_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@/%?-]*$")


_URL = re.compile(r"^(?:https?|file)://[A-Za-z0-9._~!$&'()*+,;=:@/%?\[\]-]+$")


_GLOB = re.compile(r"^[A-Za-z0-9._*?\[\]/-]+$")


#: Names fabdeploy itself puts in a release: never a linked path.
RESERVED_IN_RELEASE = frozenset({".venv", ".env", "REVISION"})


#: Keys named by the user: ``PROCESS_<NAME>`` (a companion process's command),
#: ``ROLE_<NAME>`` (a role's hosts) and ``RUNS_<NAME>`` (the processes a role runs).
NAMED_KEY = re.compile(r"^(PROCESS|ROLE|RUNS)_([A-Z][A-Z0-9_]{0,40})$")


#: The process gunicorn serves; every other process is a companion named by PROCESS_<NAME>.
WEB = "web"


def _command(raw: str) -> str:
    """A shell command: run as written, on purpose (the one kind of value never quoted)."""
    if "\0" in raw:
        raise ValueError("a command may not contain NUL")
    return raw


def _name(raw: str) -> str:
    if not _NAME.match(raw):
        raise ValueError(
            "expected a lowercase name (letters, digits, '-', '_'; starting with a letter)"
        )
    return raw


def _whole(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected a whole number >= {minimum}, got {raw!r}") from None
        if value < minimum:
            raise ValueError(f"expected a whole number >= {minimum}, got {value}")
        return value

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "yes", "true", "on"}:
        return True
    if lowered in {"0", "no", "false", "off", ""}:
        return False
    raise ValueError(f"expected yes or no, got {raw!r}")


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _user(raw: str) -> str:
    if raw and not _USER.match(raw):
        raise ValueError(f"expected a user name (letters, digits, '.', '_', '-'), got {raw!r}")
    return raw


def _abs_path(raw: str) -> str:
    if not raw:
        return ""
    if not raw.startswith("/") or raw.rstrip("/") == "" or ".." in raw.split("/"):
        raise ValueError(f"expected an absolute path other than '/' and without '..', got {raw!r}")
    if not _PATH_CHARS.match(raw):
        raise ValueError(
            f"a path on the hosts may hold only letters, digits and . _ % + @ = , / -, got {raw!r}"
        )
    return raw.rstrip("/")


def _local_path(raw: str) -> str:
    if any(ch in raw for ch in "\n\r\0"):
        raise ValueError("a path may not contain a newline or NUL")
    return raw


def _relative_file(raw: str) -> str:
    if raw.startswith("/") or ".." in raw.split("/") or raw.startswith("-"):
        raise ValueError(f"expected a relative path inside APP_DIR (no '..'), got {raw!r}")
    if not _PATH_CHARS.match(raw):
        raise ValueError(
            f"expected a file name of letters, digits and . _ % + @ = , / -, got {raw!r}"
        )
    return raw


def _optional_relative_file(raw: str) -> str:
    return _relative_file(raw) if raw else ""


def _linked(raw: str) -> tuple[str, ...]:
    """Paths inside the app that live in shared/ (LINKED_DIRS, LINKED_FILES)."""
    paths = _list(raw)
    for path in paths:
        parts = path.strip("/").split("/")
        if (
            path.startswith("/")
            or not _PATH_CHARS.match(path)
            or any(part in ("", ".", "..") for part in parts)
            or path.startswith("-")
            or parts[0] in RESERVED_IN_RELEASE
        ):
            raise ValueError(
                "expected paths relative to the app's directory (letters, digits and "
                f". _ % + @ = , / -; no '..', not {', '.join(sorted(RESERVED_IN_RELEASE))}), "
                f"got {path!r}"
            )
    return tuple(path.strip("/") for path in paths)


def _primary(raw: str) -> str:
    if raw and not _HOST.match(raw.strip()):
        raise ValueError(f"expected [user@]host[:port] of one of the hosts, got {raw!r}")
    return raw.strip()


def _python(raw: str) -> str:
    value = raw.strip()
    is_path = value.startswith("/") and _PATH_CHARS.match(value) and ".." not in value.split("/")
    if not (is_path or _COMMAND_NAME.match(value)) or value.startswith("-"):
        raise ValueError(
            "expected an absolute path or a plain command name such as python3 or "
            f"/usr/bin/python3.12 (no spaces, arguments or shell characters), got {raw!r}"
        )
    return value


def _specifier(raw: str) -> str:
    """A PEP 440 version specifier (``>=3.11``, ``>=3.10,<3.14``), or empty."""
    value = raw.strip()
    if not value:
        return ""
    try:
        return str(SpecifierSet(value))
    except InvalidSpecifier:
        raise ValueError(
            f"expected a PEP 440 version specifier such as >=3.12 or >=3.10,<3.14, got {raw!r}"
        ) from None


def _url(raw: str) -> str:
    if raw and not _URL.match(raw):
        raise ValueError(
            f"expected an http(s):// or file:// URL without spaces or quotes, got {raw!r}"
        )
    return raw


def _globs(raw: str) -> tuple[str, ...]:
    patterns = _list(raw)
    for pattern in patterns:
        if not _GLOB.match(pattern) or ".." in pattern.split("/"):
            raise ValueError(
                "expected file names or globs under shared/log (letters, digits, . _ - / * ? []), "
                f"got {pattern!r}"
            )
    return patterns


def _bind(raw: str) -> str:
    host, sep, port = raw.rpartition(":")
    if (
        not sep
        or not host
        or not _ADDRESS.match(host)
        or not port.isdigit()
        or not 0 < int(port) < 65536
    ):
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8000, got {raw!r}")
    return raw


def _url_path(raw: str) -> str:
    if not _URL_PATH.match(raw):
        raise ValueError(
            f"expected a URL path starting with '/' (no spaces, quotes or backslashes), got {raw!r}"
        )
    return raw


#: A Host header: a name or address, or a bracketed IPv6 address, and an optional port.
_HOST_HEADER = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)


def _host_header(raw: str) -> str:
    if raw and not _HOST_HEADER.match(raw):
        raise ValueError(
            f"expected a host name the app accepts, such as example.com or example.com:443, "
            f"got {raw!r}"
        )
    return raw


def _wsgi(raw: str) -> str:
    if not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.()]*$", raw):
        raise ValueError(f"expected MODULE:CALLABLE such as app:app, got {raw!r}")
    return raw


#: gunicorn's own worker classes (``-k NAME``); anything else is a dotted path to a class.
GUNICORN_WORKERS = frozenset({"sync", "gthread", "eventlet", "gevent", "tornado"})


def _worker_class(raw: str) -> str:
    value = raw.strip()
    if value in GUNICORN_WORKERS or re.match(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$", value):
        return value
    raise ValueError(
        "expected one of gunicorn's worker classes (sync, gthread, gevent, eventlet, tornado) or "
        f"a dotted class path such as uvicorn_worker.UvicornWorker, got {raw!r}"
    )


def _release_file(raw: str) -> str:
    if not raw:
        return ""
    parts = raw.split("/")
    if raw.startswith("/") or ".." in parts or not re.match(r"^[\w./-]+\.py$", raw):
        raise ValueError(f"expected a .py file relative to the app's directory, got {raw!r}")
    return raw


def _batch(raw: str) -> str:
    items = [item.strip() for item in raw.split(",")]
    for value in items:
        number = value[:-1] if value.endswith("%") else value
        if not number.isdigit() or int(number) < 1 or (value.endswith("%") and int(number) > 100):
            raise ValueError(
                "expected a count such as 2, a percentage such as 25%, or a list of them "
                f"such as 1,25% (one canary host, then a quarter of the fleet a round), got {raw!r}"
            )
    return ",".join(items)


def _hosts(raw: str) -> tuple[str, ...]:
    hosts = _list(raw)
    for host in hosts:
        if not _HOST.match(host):
            raise ValueError(f"expected [user@]host[:port], got {host!r}")
    return hosts


@dataclass(frozen=True)
class Key:
    """One setting of an env file: its name, parser, default and one line of help."""

    name: str
    parse: Callable[[str], Any]
    default: str
    help: str
    required: bool = False


#: Every key an environment file may set. `config/example.env` and docs/configuration.md
#: document exactly these (a test keeps them in step).
KEYS: tuple[Key, ...] = (
    Key("HOSTS", _hosts, "", "Comma-separated [user@]host[:port] to deploy to; -H overrides"),
    Key(
        "SSH_USER", _user, "", "SSH login user (the deploy user); empty: Fabric/ssh_config default"
    ),
    Key("SSH_PORT", _whole(1), "22", "SSH port for hosts that name none"),
    Key("SSH_KEY", _local_path, "", "Private key file to log in with (relative to the project)"),
    Key(
        "KNOWN_HOSTS", _local_path, "", "Extra known_hosts file, checked besides ~/.ssh/known_hosts"
    ),
    Key("TRUST_NEW_HOSTS", _bool, "no", "yes: accept and record keys of hosts never seen before"),
    Key("CONNECT_TIMEOUT", _whole(1), "10", "Seconds to wait for an SSH connection"),
    Key("APP_NAME", _name, "", "Name of the app: service, unit file and deploy root", True),
    Key("APP_DIR", _local_path, ".", "The app's source directory (relative to the project)"),
    Key("REQUIREMENTS", _relative_file, "requirements.txt", "Requirements file inside APP_DIR"),
    Key(
        "EXCLUDES",
        _list,
        ".git,.venv,__pycache__,*.pyc,.pytest_cache",
        "Patterns left out of a release built from a plain directory",
    ),
    Key("ALLOW_DIRTY", _bool, "no", "yes: ship uncommitted changes of a git checkout"),
    Key(
        "PREBUILT_PACKAGES",
        _bool,
        "yes",
        "yes: for hosts whose wheel tags equal the local Python's, install packages locally",
    ),
    Key(
        "PACKAGE_INDEX",
        _url,
        "",
        "Package index URL this machine resolves the hosts' packages from; empty: pip's default",
    ),
    Key(
        "HOST_PACKAGE_INDEX",
        _url,
        "",
        "Index URL each host pip-installs from itself (nothing shipped); empty: ship packages",
    ),
    Key(
        "DEPLOY_ROOT", _abs_path, "", "Directory holding releases on the host; empty: /srv/APP_NAME"
    ),
    Key("APP_USER", _user, "", "User the service runs as; empty: the SSH user"),
    Key("PYTHON", _python, "python3", "Python interpreter on the host"),
    Key(
        "PYTHON_REQUIRES",
        _specifier,
        "",
        "The app's Python versions (PEP 440, e.g. >=3.12); empty: requires-python of pyproject.toml",
    ),
    Key("WSGI_APP", _wsgi, "app:app", "gunicorn's WSGI target, MODULE:CALLABLE"),
    Key("BIND", _bind, "127.0.0.1:8000", "Address gunicorn listens on, HOST:PORT"),
    Key("WORKERS", _whole(1), "2", "gunicorn worker processes"),
    Key(
        "WORKER_CLASS",
        _worker_class,
        "sync",
        "gunicorn worker class; uvicorn_worker.UvicornWorker serves an ASGI app",
    ),
    Key("THREADS", _whole(1), "1", "Threads per worker (gunicorn's gthread worker uses them)"),
    Key("WORKER_TIMEOUT", _whole(1), "30", "Seconds a worker may be silent before it is restarted"),
    Key(
        "MAX_REQUESTS",
        _whole(0),
        "0",
        "Requests a worker serves before it is replaced; 0: no limit",
    ),
    Key(
        "MAX_REQUESTS_JITTER",
        _whole(0),
        "0",
        "Random extra requests added to MAX_REQUESTS per worker",
    ),
    Key(
        "GUNICORN_CONFIG",
        _release_file,
        "",
        "The app's own gunicorn settings file in APP_DIR, read after fabdeploy's",
    ),
    Key("HEALTH_PATH", _url_path, "/health", "Path that answers 200 when the app is healthy"),
    Key(
        "HEALTH_HOST",
        _host_header,
        "",
        "Host header of every health probe (smoke, switch, health, status); empty: the address probed",
    ),
    Key("HEALTH_TIMEOUT", _whole(1), "30", "Seconds a new release has to become healthy"),
    Key(
        "KEEP_RELEASES", _whole(2), "5", "Releases kept on each host (current and previous always)"
    ),
    Key("SECRETS_FILE", _local_path, "", "Local env file of the app's secrets, uploaded 0600"),
    Key(
        "TEST_COMMAND",
        _command,
        "python -m pytest -q",
        "Command run in APP_DIR to gate a deploy, in the test venv; unset: detected (docs/test.md)",
    ),
    Key(
        "TEST_REQUIREMENTS",
        _optional_relative_file,
        "",
        "Test requirements file in APP_DIR; empty: a test/dev group or extra, requirements-test.txt",
    ),
    Key(
        "TEST_VENV",
        _bool,
        "yes",
        "yes: tests run in a local venv of the app's and test requirements; no: in fab's Python",
    ),
    Key("LOG_FILES", _globs, "", "The app's own log files (globs under shared/log) for `fab logs`"),
    Key(
        "HOOK_AFTER_UPLOAD",
        _command,
        "",
        "Command run in each new release after its venv is ready; 'once:' for one host",
    ),
    Key(
        "HOOK_BEFORE_SWITCH",
        _command,
        "",
        "Command run in the new release before the switch (e.g. once: migrations)",
    ),
    Key(
        "HOOK_AFTER_SWITCH",
        _command,
        "",
        "Command run in the new release after it serves; 'once:' for one host",
    ),
    Key(
        "HOOK_FAILED",
        _command,
        "",
        "Command run locally when a deploy or rollback fails (FABDEPLOY_ERROR, FABDEPLOY_SERVING)",
    ),
    Key(
        "MIGRATE_COMMAND",
        _command,
        "",
        "Command run once per deploy on the primary host, in the new release, before smoke",
    ),
    Key(
        "MIGRATE_ON",
        _choice("primary", "all"),
        "primary",
        "Where MIGRATE_COMMAND runs: primary (once) or all (every host: host-local databases)",
    ),
    Key(
        "MIGRATE_TIMEOUT",
        _whole(0),
        "600",
        "Seconds MIGRATE_COMMAND may run before it is stopped (TERM, then KILL); 0: no limit",
    ),
    Key(
        "SMOKE_COMMAND",
        _command,
        "",
        "Command run in each new release before its side-port boot, part of the smoke check",
    ),
    Key(
        "LINKED_DIRS",
        _linked,
        "",
        "Directories of the app kept in shared/ and linked into every release (media)",
    ),
    Key(
        "LINKED_FILES",
        _linked,
        "",
        "Files of the app kept in shared/ and linked into every release (db.sqlite3)",
    ),
    Key(
        "STOP_TIMEOUT",
        _whole(1),
        "60",
        "Seconds a companion process has to stop after TERM before it is killed",
    ),
    Key(
        "PRIMARY_HOST",
        _primary,
        "",
        "Host of once: hooks, migrations, exec --once; empty: the first of the web role",
    ),
    Key("PARALLEL", _whole(1), "8", "Hosts prepared at once in a fleet deploy"),
    Key(
        "SWITCH_BATCH",
        _batch,
        "1,25%",
        "Hosts switched a round: counts or percentages, the last repeating (1,25%: a canary first)",
    ),
)


KEYS_BY_NAME = {key.name: key for key in KEYS}


class Secrets:
    """The app's secrets: key names are shown, values never are."""

    def __init__(self, path: Path | None, values: dict[str, str]) -> None:
        self.path = path
        self._values = dict(values)

    def names(self) -> list[str]:
        """Names of the secrets, for messages."""
        return sorted(self._values)

    def values(self) -> list[str]:
        """The secret values, so output can be checked to never contain them."""
        return [value for value in self._values.values() if value]

    def names_where(self, test: Callable[[str], bool]) -> list[str]:
        """Names of the secrets whose value passes ``test`` (the values stay here)."""
        return sorted(name for name, value in self._values.items() if test(value))

    def render(self) -> str:
        """The file as uploaded to the host (``KEY="value"`` lines: `tasks.secretsfile`)."""
        return secretsfile.render(self._values)

    def __repr__(self) -> str:
        return f"Secrets(path={self.path!r}, names={self.names()!r})"

    def __bool__(self) -> bool:
        return bool(self._values)


@dataclass(frozen=True)
class Settings:
    """Everything fabdeploy knows about one environment, validated and typed."""

    environment: str
    source: Path
    project_dir: Path
    hosts: tuple[str, ...]
    ssh_user: str
    ssh_port: int
    ssh_key: str
    known_hosts: str
    trust_new_hosts: bool
    connect_timeout: int
    app_name: str
    app_dir: Path
    requirements: str
    excludes: tuple[str, ...]
    allow_dirty: bool
    prebuilt_packages: bool
    package_index: str
    host_package_index: str
    deploy_root: str
    app_user: str
    python: str
    wsgi_app: str
    bind: str
    workers: int
    worker_class: str
    threads: int
    worker_timeout: int
    max_requests: int
    max_requests_jitter: int
    gunicorn_config: str
    health_path: str
    health_timeout: int
    keep_releases: int
    secrets_file: str
    test_command: str
    log_files: tuple[str, ...]
    parallel: int
    switch_batch: str
    migrate_command: str = ""
    migrate_on: str = "primary"
    migrate_timeout: int = 600
    smoke_command: str = ""
    test_requirements: str = ""
    test_venv: bool = True
    linked_dirs: tuple[str, ...] = ()
    linked_files: tuple[str, ...] = ()
    stop_timeout: int = 60
    primary_host: str = ""
    health_host: str = ""  # the Host header of the health probes ("": the address probed)
    python_requires: str = ""  # PYTHON_REQUIRES: a PEP 440 specifier ("" none: pyproject's)
    #: Companion processes: name -> command (``PROCESS_<NAME>``), in env-file order.
    processes: dict[str, str] = field(default_factory=dict, compare=False)
    #: Roles: name -> its hosts (``ROLE_<NAME>``), and name -> what it runs (``RUNS_<NAME>``).
    roles: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    runs: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    hooks: dict[str, str] = field(default_factory=dict, compare=False)
    lines: dict[str, int] = field(default_factory=dict, compare=False)  # KEY -> its line
    #: `deploy --ref`: the ref's commit; APP_DIR is then that commit's tree, exported.
    revision: str = field(default="", compare=False)
    secrets: Secrets = field(repr=False, compare=False, default_factory=lambda: Secrets(None, {}))

    @property
    def port(self) -> int:
        """The TCP port gunicorn binds."""
        return int(self.bind.rpartition(":")[2])

    @property
    def service(self) -> str:
        """The systemd unit's name."""
        return f"{self.app_name}.service"

    def unit(self, process: str) -> str:
        """The systemd unit of ``process`` (`WEB` is the app's own service)."""
        return self.service if process == WEB else f"{self.app_name}-{process}.service"

    def where(self, key: str) -> str:
        """``<env file>:<line>: KEY`` (or ``<env file>: KEY`` for a default), for messages."""
        line = self.lines.get(key)
        return f"{self.source}:{line}: {key}" if line else f"{self.source}: {key}"

    def command(self, task: str) -> str:
        """The ``fab`` command line that runs ``task`` against this environment."""
        word = "" if self.environment == DEFAULT_ENVIRONMENT else f"{self.environment} "
        return f"fab {word}{task}"

    def batch_sizes(self, hosts: int) -> list[int]:
        """How many of ``hosts`` hosts each switch round holds, in order (Ansible's ``serial``:
        each item of SWITCH_BATCH is one round, the last repeats; a percentage is of the whole
        fleet, rounded down, at least 1)."""
        items = self.switch_batch.split(",")
        sizes: list[int] = []
        while sum(sizes) < hosts:
            item = items[min(len(sizes), len(items) - 1)]
            size = hosts * int(item[:-1]) // 100 if item.endswith("%") else int(item)
            sizes.append(min(max(1, size), hosts - sum(sizes)))
        return sizes


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


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest directory from ``start`` (the cwd) upward that has a ``config/`` of env files."""
    explicit = os.environ.get("FABDEPLOY_PROJECT_DIR")
    if explicit:
        return Path(explicit).resolve()
    fabfile = getattr(sys.modules.get("fabfile"), "__file__", None)  # `fab` is loading it
    if start is None and fabfile:
        folder = Path(fabfile).resolve().parent
        return folder.parent if folder.name == "fabfile" else folder
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if any((candidate / "config").glob("*.env")):
            return candidate
    return here


def environments(config_dir: Path) -> list[str]:
    """The deploy targets in ``config_dir``: one per ``<name>.env``, documentation excluded."""
    if not config_dir.is_dir():
        return []
    names = (path.stem for path in config_dir.glob("*.env"))
    return sorted(name for name in names if name not in NOT_ENVIRONMENTS and _NAME.match(name))


def state(c: Context) -> Any:
    """fabdeploy's part of the invoke config (``fabdeploy.*``), made when a collection of the
    user's own lacks it: the chosen environment, the project dir, hooks."""
    if "fabdeploy" not in c.config:
        c.config["fabdeploy"] = {}
    return c.config["fabdeploy"]


def project_dir(c: Context) -> Path:
    """The project whose ``config/`` is read: set by the namespace, else found from the cwd."""
    configured = state(c).get("project_dir")
    if configured:
        return Path(configured)
    prefix = fabfile_location(c)
    if prefix and any((Path(prefix) / "config").glob("*.env")):
        return Path(prefix)
    return find_project_dir()


def fabfile_location(c: Context) -> str | None:
    """Where ``fab`` found the fabfile (its directory, or ``fab -r DIR``), None outside fab.

    invoke keeps it only as the config's private ``_project_prefix`` (set by the public
    `Config.set_project_location`, with no public getter: checked in invoke 2.2.1); this is
    the one place fabdeploy reads it.
    """
    return getattr(c.config, "_project_prefix", None)


def selected_environment(c: Context) -> str:
    """The environment named on the command line (``fab staging ...``), else the default."""
    chosen = state(c).get("environment")
    return chosen or os.environ.get("FABDEPLOY_ENVIRONMENT") or DEFAULT_ENVIRONMENT


def read_env_file(path: Path, *, what: str = "environment file") -> dict[str, tuple[str, int]]:
    """Parse ``path`` into ``{KEY: (value, line)}``; a missing or unparsable file is an error."""
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from None
    found: dict[str, tuple[str, int]] = {}
    for binding in parse_stream(_Stream(text)):
        raw = binding.original.string
        line = binding.original.line + raw[: len(raw) - len(raw.lstrip())].count("\n")
        if binding.error:
            snippet = binding.original.string.strip().splitlines()[0][:60]
            raise ConfigError(f"{path}:{line}: cannot parse {snippet!r} (expected KEY=value)")
        if binding.key is None:
            continue
        if binding.key in found:
            first = found[binding.key][1]
            raise ConfigError(f"{path}:{line}: {binding.key}: set twice (first on line {first})")
        found[binding.key] = (binding.value or "", line)
    return found


class _Stream:
    """The minimal text stream `parse_stream` reads."""

    def __init__(self, text: str) -> None:
        self._text = text

    def read(self) -> str:
        return self._text


def parse_values(raw: dict[str, tuple[str, int]], source: Path) -> dict[str, Any]:
    """Check names and types of ``raw`` against `KEYS`; return ``{key: typed value}``."""
    values: dict[str, Any] = {}
    for name, (text, line) in raw.items():
        if NAMED_KEY.match(name):
            continue  # PROCESS_/ROLE_/RUNS_<NAME>: read by `named_values`
        key = KEYS_BY_NAME.get(name)
        if key is None:
            close = difflib.get_close_matches(name, KEYS_BY_NAME, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{source}:{line}: {name}: unknown key{hint}")
        try:
            values[name] = key.parse(text)
        except ValueError as exc:
            raise ConfigError(f"{source}:{line}: {name}: {exc}") from None
    for key in KEYS:
        if key.name in values:
            continue
        if key.required:
            raise ConfigError(f"{source}: {key.name}: required key is missing ({key.help})")
        values[key.name] = key.parse(key.default)
    return values


def named_values(
    raw: dict[str, tuple[str, int]], source: Path
) -> tuple[dict[str, str], dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """The ``PROCESS_``, ``ROLE_`` and ``RUNS_<NAME>`` keys: processes, roles, what roles run."""
    processes: dict[str, str] = {}
    roles: dict[str, tuple[str, ...]] = {}
    runs: dict[str, tuple[str, ...]] = {}
    for name, (text, line) in raw.items():
        match = NAMED_KEY.match(name)
        if not match:
            continue
        kind, label = match.group(1), match.group(2).lower().replace("_", "-")
        try:
            if kind == "PROCESS":
                if label == WEB:
                    raise ValueError(f"'{WEB}' is gunicorn's process (WSGI_APP): name another")
                if not text.strip():
                    raise ValueError("expected the command that runs the process")
                processes[label] = _command(text.strip())
            elif kind == "ROLE":
                roles[label] = _hosts(text)
            else:
                runs[label] = tuple(_name(item) for item in _list(text))
        except ValueError as exc:
            raise ConfigError(f"{source}:{line}: {name}: {exc}") from None
    return processes, roles, runs


def host_key(host: str) -> str:
    """``host`` or ``host:port`` as `remote.Host` names it: no user, no port 22."""
    name = host.rpartition("@")[2]
    base, sep, port = name.rpartition(":")
    if sep and port.isdigit() and base.count(":") == 0:
        return base if port == "22" else name
    return name


def check_roles(
    values: dict[str, Any],
    raw: dict[str, tuple[str, int]],
    source: Path,
    named: tuple[dict[str, str], dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]],
) -> None:
    """Every role has hosts (of HOSTS, when it is set) and runs known processes; PRIMARY_HOST
    is one of the hosts: else a `ConfigError` naming file, line and key."""
    processes, roles, runs = named

    def where(key: str) -> str:
        return f"{source}:{raw[key][1]}: {key}" if key in raw else f"{source}: {key}"

    def key_of(prefix: str, role: str) -> str:
        return f"{prefix}_{role.upper().replace('-', '_')}"

    known = (WEB, *processes)
    for role, hosts in roles.items():
        if not hosts:
            raise ConfigError(f"{where(key_of('ROLE', role))}: role {role!r} has no hosts")
        listed = {host_key(h) for h in values["HOSTS"]}
        unknown = [h for h in hosts if listed and host_key(h) not in listed]
        if unknown:
            raise ConfigError(
                f"{where(key_of('ROLE', role))}: {unknown[0]} is not one of HOSTS "
                f"({', '.join(values['HOSTS'])})"
            )
        if role not in runs and role not in known:
            raise ConfigError(
                f"{where(key_of('ROLE', role))}: role {role!r} runs nothing: set "
                f"{key_of('RUNS', role)} to some of {', '.join(known)}"
            )
    for role, names in runs.items():
        if role not in roles:
            raise ConfigError(
                f"{where(key_of('RUNS', role))}: no role {role!r} (set {key_of('ROLE', role)})"
            )
        for item in names:
            if item not in known:
                raise ConfigError(
                    f"{where(key_of('RUNS', role))}: unknown process {item!r} "
                    f"(processes: {', '.join(known)})"
                )
    everyone = values["HOSTS"] or tuple(h for hosts in roles.values() for h in hosts)
    primary = values["PRIMARY_HOST"]
    if primary and host_key(primary) not in {host_key(h) for h in everyone}:
        raise ConfigError(
            f"{where('PRIMARY_HOST')}: {primary} is not one of the hosts ({', '.join(everyone)})"
        )


def load_secrets(path_text: str, project: Path, where: str = "") -> Secrets:
    """Read the app's secrets file, checking it parses; values stay inside `Secrets`.
    ``where`` (``<env file>:<line>``) is named when the file is missing."""
    if not path_text:
        return Secrets(None, {})
    path = (project / path_text).resolve()
    if where and not path.is_file():
        raise ConfigError(f"{where}: SECRETS_FILE: {path}: secrets file (SECRETS_FILE) not found")
    raw = read_env_file(path, what="secrets file (SECRETS_FILE)")
    for name, (_, line) in raw.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise ConfigError(f"{path}:{line}: {name}: not a valid variable name")
    return Secrets(path, {name: value for name, (value, _) in raw.items()})


def build(environment: str, project: Path) -> Settings:
    """Read and validate ``config/<environment>.env`` under ``project``."""
    config_dir = project / "config"
    source = config_dir / f"{environment}.env"
    if not source.is_file():
        known = ", ".join(environments(config_dir)) or "none"
        raise ConfigError(f"{source}: environment file not found (environments here: {known})")
    raw = read_env_file(source)
    values = parse_values(raw, source)
    named = named_values(raw, source)
    check_roles(values, raw, source, named)
    processes, roles, runs = named
    hosts = values["HOSTS"] or tuple(dict.fromkeys(h for hs in roles.values() for h in hs))
    name = values["APP_NAME"]
    return Settings(
        environment=environment,
        source=source,
        project_dir=project,
        hosts=hosts,
        ssh_user=values["SSH_USER"],
        ssh_port=values["SSH_PORT"],
        ssh_key=str(project / values["SSH_KEY"]) if values["SSH_KEY"] else "",
        known_hosts=str(project / values["KNOWN_HOSTS"]) if values["KNOWN_HOSTS"] else "",
        trust_new_hosts=values["TRUST_NEW_HOSTS"],
        connect_timeout=values["CONNECT_TIMEOUT"],
        app_name=name,
        app_dir=(project / values["APP_DIR"]).resolve(),
        requirements=values["REQUIREMENTS"],
        excludes=values["EXCLUDES"],
        allow_dirty=values["ALLOW_DIRTY"],
        prebuilt_packages=values["PREBUILT_PACKAGES"],
        package_index=values["PACKAGE_INDEX"],
        host_package_index=values["HOST_PACKAGE_INDEX"],
        deploy_root=values["DEPLOY_ROOT"] or f"/srv/{name}",
        app_user=values["APP_USER"],
        python=values["PYTHON"],
        wsgi_app=values["WSGI_APP"],
        bind=values["BIND"],
        workers=values["WORKERS"],
        worker_class=values["WORKER_CLASS"],
        threads=values["THREADS"],
        worker_timeout=values["WORKER_TIMEOUT"],
        max_requests=values["MAX_REQUESTS"],
        max_requests_jitter=values["MAX_REQUESTS_JITTER"],
        gunicorn_config=values["GUNICORN_CONFIG"],
        health_path=values["HEALTH_PATH"],
        health_timeout=values["HEALTH_TIMEOUT"],
        health_host=values["HEALTH_HOST"],
        keep_releases=values["KEEP_RELEASES"],
        secrets_file=values["SECRETS_FILE"],
        test_command=values["TEST_COMMAND"],
        test_requirements=values["TEST_REQUIREMENTS"],
        test_venv=values["TEST_VENV"],
        log_files=values["LOG_FILES"],
        parallel=values["PARALLEL"],
        switch_batch=values["SWITCH_BATCH"],
        migrate_command=values["MIGRATE_COMMAND"],
        migrate_on=values["MIGRATE_ON"],
        migrate_timeout=values["MIGRATE_TIMEOUT"],
        smoke_command=values["SMOKE_COMMAND"],
        linked_dirs=values["LINKED_DIRS"],
        linked_files=values["LINKED_FILES"],
        stop_timeout=values["STOP_TIMEOUT"],
        primary_host=values["PRIMARY_HOST"],
        python_requires=values["PYTHON_REQUIRES"],
        processes=processes,
        roles=roles,
        runs=runs,
        hooks={point: values[f"HOOK_{point.upper()}"] for point in HOOK_POINTS},
        lines={key: line for key, (_, line) in raw.items()},
        secrets=load_secrets(
            values["SECRETS_FILE"], project, f"{source}:{raw.get('SECRETS_FILE', ('', 0))[1]}"
        ),
    )


def load(c: Context) -> Settings:
    """The settings of the environment this command runs against (the one config reader)."""
    return build(selected_environment(c), project_dir(c))
