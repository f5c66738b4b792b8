"""The settings object, `Settings`: each key of an env file declared once, as the field it
fills (name, parser, default, help line); `KEYS` and all that documents them follow from it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..core import secretsfile
from ..core.errors import ConfigError
from . import parse
from .key import Key, Loaded, declared, setting

#: The environment used when the command line names none.
DEFAULT_ENVIRONMENT = "default"
#: The base env file every environment reads first (``config/common.env``): not an environment.
COMMON = "common"
#: The process gunicorn serves; every other process is a companion named by PROCESS_<NAME>.
WEB = "web"


# --- what a key's value becomes, when not the parsed value itself ------------------------------


def in_project(path: str, loaded: Loaded) -> str:
    """A local file named relative to the project, joined to it (empty stays empty)."""
    return str(loaded.project / path) if path else ""


def project_path(path: str, loaded: Loaded) -> Path:
    """A local directory named relative to the project, resolved."""
    return (loaded.project / path).resolve()


def srv_default(root: str, loaded: Loaded) -> str:
    """DEPLOY_ROOT, or ``/srv/<APP_NAME>`` when it is empty."""
    return root or f"/srv/{loaded.values['APP_NAME']}"


#: A name `useradd` accepts for the app's system user (APP_USER's default is APP_NAME).
SYSTEM_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def app_user_default(user: str, loaded: Loaded) -> str:
    """APP_USER, or when it is empty a system user of the app's own named APP_NAME (never
    root: the app runs unprivileged, docs/security.md#ownership)."""
    name = user or loaded.values["APP_NAME"]
    if name == "root":
        raise ConfigError("APP_USER: the app may not run as root: set APP_USER to another user")
    if not user and not SYSTEM_USER.match(name):
        raise ConfigError(
            f"APP_NAME {name!r} is not a valid user name (lowercase, at most 32 characters), "
            "and the app's user is named after it: set APP_USER to the user the app runs as"
        )
    return name


def hosts_of_roles(hosts: tuple[str, ...], loaded: Loaded) -> tuple[str, ...]:
    """HOSTS, or when it is empty the hosts of the roles (``ROLE_<NAME>``), once each."""
    return hosts or tuple(dict.fromkeys(h for hs in loaded.roles.values() for h in hs))


# --- the settings object ---------------------------------------------------------------------


class Secrets:
    """The app's secrets: key names are shown, values never are."""

    def __init__(
        self, path: Path | None, values: dict[str, str], lines: dict[str, int] | None = None
    ) -> None:
        self.path = path
        self._values = dict(values)
        self._lines = dict(lines or {})

    def line(self, name: str) -> int:
        """The line of the secrets file that sets ``name`` (0: unknown)."""
        return self._lines.get(name, 0)

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
        """The file as uploaded to the host (``KEY="value"`` lines: `tasks.core.secretsfile`)."""
        return secretsfile.render(self._values)

    def __repr__(self) -> str:
        return f"Secrets(path={self.path!r}, names={self.names()!r})"

    def __bool__(self) -> bool:
        return bool(self._values)


@dataclass(frozen=True)
class Settings:
    """Everything fabdeploy knows about one environment, validated and typed.

    Each `setting` field is a key of the env file (its attribute: the key's name in lowercase),
    declared here once, in the order config/example.env and docs/configuration.md list them:
    `KEYS`, the env-file reader (`tasks.config.load.build`) and the reference
    (`tasks.config.reference`) follow from these lines.
    """

    environment: str
    source: Path
    project_dir: Path
    hosts: tuple[str, ...] = setting(
        "HOSTS",
        parse.hosts,
        "",
        "Comma-separated [user@]host[:port] to deploy to; -H overrides",
        resolve=hosts_of_roles,
    )
    ssh_user: str = setting(
        "SSH_USER",
        parse.user,
        "",
        "SSH login user (the deploy user); empty: Fabric/ssh_config default",
    )
    ssh_port: int = setting("SSH_PORT", parse.whole(1), "22", "SSH port for hosts that name none")
    ssh_key: str = setting(
        "SSH_KEY",
        parse.local_path,
        "",
        "Private key file to log in with (relative to the project)",
        resolve=in_project,
    )
    known_hosts: str = setting(
        "KNOWN_HOSTS",
        parse.local_path,
        "",
        "Extra known_hosts file, checked besides ~/.ssh/known_hosts",
        resolve=in_project,
    )
    trust_new_hosts: bool = setting(
        "TRUST_NEW_HOSTS",
        parse.yes_no,
        "no",
        "yes: accept and record keys of hosts never seen before",
    )
    connect_timeout: int = setting(
        "CONNECT_TIMEOUT", parse.whole(1), "10", "Seconds to wait for an SSH connection"
    )
    app_name: str = setting(
        "APP_NAME",
        parse.name,
        "",
        "Name of the app: service, unit file and deploy root",
        required=True,
    )
    app_dir: Path = setting(  # noqa: RUF009 (a dataclasses.field, like every setting)
        "APP_DIR",
        parse.local_path,
        ".",
        "The app's source directory (relative to the project)",
        resolve=project_path,
    )
    requirements: str = setting(
        "REQUIREMENTS",
        parse.optional_relative_file,
        "",
        "Lock or requirements file inside APP_DIR the packages come from; empty: uv.lock, "
        "poetry.lock, pdm.lock, requirements.txt, the first found",
    )
    excludes: tuple[str, ...] = setting(
        "EXCLUDES",
        parse.comma_list,
        ".git,.venv,__pycache__,*.pyc,.pytest_cache",
        "Patterns left out of a release built from a plain directory",
    )
    allow_dirty: bool = setting(
        "ALLOW_DIRTY", parse.yes_no, "no", "yes: ship uncommitted changes of a git checkout"
    )
    build_command: str = setting(
        "BUILD_COMMAND",
        parse.command,
        "",
        "Local command making BUILD_OUTPUTS in a clean copy of the release source; empty: none",
    )
    build_outputs: tuple[str, ...] = setting(
        "BUILD_OUTPUTS",
        parse.build_outputs,
        "",
        "Files or directories BUILD_COMMAND makes, shipped in the release even if git ignores them",
    )
    build_inputs: tuple[str, ...] = setting(
        "BUILD_INPUTS",
        parse.source_globs,
        "",
        "Files or globs BUILD_OUTPUTS depend on (the build's cache key); empty: the whole source",
    )
    prebuilt_packages: bool = setting(
        "PREBUILT_PACKAGES",
        parse.yes_no,
        "yes",
        "yes: for hosts whose wheel tags equal the local Python's, install packages locally",
    )
    package_index: str = setting(
        "PACKAGE_INDEX",
        parse.url,
        "",
        "Package index URL this machine resolves the hosts' packages from; empty: pip's default",
    )
    host_package_index: str = setting(
        "HOST_PACKAGE_INDEX",
        parse.url,
        "",
        "Index URL each host pip-installs from itself (nothing shipped); empty: ship packages",
    )
    deploy_root: str = setting(
        "DEPLOY_ROOT",
        parse.abs_path,
        "",
        "Directory holding releases on the host; empty: /srv/APP_NAME",
        resolve=srv_default,
    )
    app_user: str = setting(
        "APP_USER",
        parse.user,
        "",
        "User the app runs as (setup creates a system user); empty: APP_NAME",
        resolve=app_user_default,
    )
    python: str = setting("PYTHON", parse.python, "python3", "Python interpreter on the host")
    python_requires: str = setting(
        "PYTHON_REQUIRES",
        parse.specifier,
        "",
        "The app's Python versions (PEP 440, e.g. >=3.12); empty: requires-python of pyproject.toml",
    )
    wsgi_app: str = setting(
        "WSGI_APP", parse.wsgi, "app:app", "gunicorn's WSGI target, MODULE:CALLABLE"
    )
    bind: str = setting(
        "BIND", parse.bind, "127.0.0.1:8000", "Address gunicorn listens on, HOST:PORT"
    )
    workers: int = setting("WORKERS", parse.whole(1), "2", "gunicorn worker processes")
    worker_class: str = setting(
        "WORKER_CLASS",
        parse.worker_class,
        "sync",
        "gunicorn worker class; uvicorn_worker.UvicornWorker serves an ASGI app",
    )
    threads: int = setting(
        "THREADS", parse.whole(1), "1", "Threads per worker (gunicorn's gthread worker uses them)"
    )
    worker_timeout: int = setting(
        "WORKER_TIMEOUT",
        parse.whole(1),
        "30",
        "Seconds a worker may be silent before it is restarted",
    )
    max_requests: int = setting(
        "MAX_REQUESTS",
        parse.whole(0),
        "0",
        "Requests a worker serves before it is replaced; 0: no limit",
    )
    max_requests_jitter: int = setting(
        "MAX_REQUESTS_JITTER",
        parse.whole(0),
        "0",
        "Random extra requests added to MAX_REQUESTS per worker",
    )
    gunicorn_config: str = setting(
        "GUNICORN_CONFIG",
        parse.release_file,
        "",
        "The app's own gunicorn settings file in APP_DIR, read after fabdeploy's",
    )
    health_path: str = setting(
        "HEALTH_PATH", parse.url_path, "/health", "Path that answers 200 when the app is healthy"
    )
    health_host: str = setting(
        "HEALTH_HOST",
        parse.host_header,
        "",
        "Host header of every health probe (smoke, switch, health, status); empty: the address probed",
    )
    health_timeout: int = setting(
        "HEALTH_TIMEOUT", parse.whole(1), "30", "Seconds a new release has to become healthy"
    )
    keep_releases: int = setting(
        "KEEP_RELEASES",
        parse.whole(2),
        "5",
        "Releases kept on each host (current and previous always)",
    )
    secrets_file: str = setting(
        "SECRETS_FILE",
        parse.local_path,
        "",
        "Local env file of the app's secrets, installed as /etc/APP_NAME/env (0640)",
    )
    test_command: str = setting(
        "TEST_COMMAND",
        parse.command,
        "python -m pytest -q",
        "Command run in APP_DIR to gate a deploy, in the test venv; unset: detected (docs/test.md)",
    )
    test_requirements: str = setting(
        "TEST_REQUIREMENTS",
        parse.optional_relative_file,
        "",
        "Test requirements file in APP_DIR; empty: a test/dev group or extra, requirements-test.txt",
    )
    test_venv: bool = setting(
        "TEST_VENV",
        parse.yes_no,
        "yes",
        "yes: tests run in a local venv of the app's and test requirements; no: in fab's Python",
    )
    log_files: tuple[str, ...] = setting(
        "LOG_FILES",
        parse.globs,
        "",
        "The app's own log files (globs under shared/log) for `fab logs`",
    )
    hook_after_upload: str = setting(
        "HOOK_AFTER_UPLOAD",
        parse.command,
        "",
        "Command run in each new release after its venv is ready; 'once:' for one host",
    )
    hook_before_switch: str = setting(
        "HOOK_BEFORE_SWITCH",
        parse.command,
        "",
        "Command run in the new release before the switch (e.g. once: migrations)",
    )
    hook_after_switch: str = setting(
        "HOOK_AFTER_SWITCH",
        parse.command,
        "",
        "Command run in the new release after it serves; 'once:' for one host",
    )
    hook_failed: str = setting(
        "HOOK_FAILED",
        parse.command,
        "",
        "Command run locally when a deploy or rollback fails (FABDEPLOY_ERROR, FABDEPLOY_SERVING)",
    )
    migrate_command: str = setting(
        "MIGRATE_COMMAND",
        parse.command,
        "",
        "Command run once per deploy on the primary host, in the new release, before smoke",
    )
    migrate_on: str = setting(
        "MIGRATE_ON",
        parse.choice("primary", "all"),
        "primary",
        "Where MIGRATE_COMMAND runs: primary (once) or all (every host: host-local databases)",
    )
    migrate_timeout: int = setting(
        "MIGRATE_TIMEOUT",
        parse.whole(0),
        "600",
        "Seconds MIGRATE_COMMAND may run before it is stopped (TERM, then KILL); 0: no limit",
    )
    smoke_command: str = setting(
        "SMOKE_COMMAND",
        parse.command,
        "",
        "Command run in each new release before its side-port boot, part of the smoke check",
    )
    linked_dirs: tuple[str, ...] = setting(
        "LINKED_DIRS",
        parse.linked,
        "",
        "Directories of the app kept in shared/ and linked into every release (media, data)",
    )
    linked_files: tuple[str, ...] = setting(
        "LINKED_FILES",
        parse.linked,
        "",
        "Files of the app kept in shared/ and linked into every release (not a SQLite db)",
    )
    stop_timeout: int = setting(
        "STOP_TIMEOUT",
        parse.whole(1),
        "60",
        "Seconds a companion process has to stop after TERM before it is killed",
    )
    sandbox_writable: tuple[str, ...] = setting(
        "SANDBOX_WRITABLE",
        parse.abs_paths,
        "",
        "Paths on the host the app may write besides its linked paths, logs and runtime files",
    )
    sandbox_capabilities: tuple[str, ...] = setting(
        "SANDBOX_CAPABILITIES",
        parse.capabilities,
        "",
        "Capabilities the app's processes get (CAP_NET_BIND_SERVICE for a port below 1024)",
    )
    sandbox_without: tuple[str, ...] = setting(
        "SANDBOX_WITHOUT",
        parse.sandbox_directives,
        "",
        "Sandbox directives left out of the units (MemoryDenyWriteExecute for a JIT)",
    )
    primary_host: str = setting(
        "PRIMARY_HOST",
        parse.primary,
        "",
        "Host of once: hooks, migrations, exec --once; empty: the first of the web role",
    )
    parallel: int = setting(
        "PARALLEL", parse.whole(1), "8", "Hosts prepared at once in a fleet deploy"
    )
    switch_batch: str = setting(
        "SWITCH_BATCH",
        parse.batch,
        "1,25%",
        "Hosts switched a round: counts or percentages, the last repeating (1,25%: a canary first)",
    )
    canary_urls: tuple[str, ...] = setting(
        "CANARY_URLS",
        parse.url_paths,
        "/",
        "Paths probed on the smoke check's side port and after each switch; a 5xx stops the release",
    )
    canary_bake: int = setting(
        "CANARY_BAKE",
        parse.whole(0),
        "30",
        "Seconds the first switch round serves, watched, before the next round (0: no bake)",
    )
    canary_max_5xx: int = setting(
        "CANARY_MAX_5XX",
        parse.whole(0),
        "5",
        "Percent of the canary's requests that may answer 5xx during its bake",
    )
    canary_min_requests: int = setting(
        "CANARY_MIN_REQUESTS",
        parse.whole(1),
        "20",
        "Requests the canary must have served before its 5xx rate counts",
    )
    #: FABDEPLOY_CACHE_DIR (`tasks.config.project.cache_dir`): the shared caches; None: the project's.
    cache_dir: Path | None = field(default=None, compare=False)
    #: Companion processes: name -> command (``PROCESS_<NAME>``), in env-file order.
    processes: dict[str, str] = field(default_factory=dict, compare=False)
    #: Roles: name -> its hosts (``ROLE_<NAME>``), and name -> what it runs (``RUNS_<NAME>``).
    roles: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    runs: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    lines: dict[str, int] = field(default_factory=dict, compare=False)  # KEY -> its line
    #: Each key set in a file: KEY -> (the file, its line): config/common.env's or the
    #: environment's own, which overrides it (`where`, ``fab check --sources``).
    origins: dict[str, tuple[Path, int]] = field(default_factory=dict, compare=False)
    #: Each key set in a file: KEY -> its text there, as written.
    texts: dict[str, str] = field(default_factory=dict, compare=False)
    #: The app's settings (``ENV_<NAME>``): variable name -> value, in file order. Not
    #: secrets: shown in clear, installed as /etc/<app>/settings (docs/configuration.md).
    app_env: dict[str, str] = field(default_factory=dict, compare=False)
    #: `deploy --ref`: the ref's commit; APP_DIR is then that commit's tree, exported.
    revision: str = field(default="", compare=False)
    secrets: Secrets = field(repr=False, compare=False, default_factory=lambda: Secrets(None, {}))

    @property
    def port(self) -> int:
        """The TCP port gunicorn binds."""
        return int(self.bind.rpartition(":")[2])

    @property
    def hooks(self) -> dict[str, str]:
        """The command of each hook point (`HOOK_POINTS`), from its ``HOOK_<POINT>`` key."""
        return {point: getattr(self, f"hook_{point}") for point in HOOK_POINTS}

    def file_of(self, key: str) -> Path:
        """The file that sets ``key``: config/common.env or the environment's own (the
        environment's for a key left to its default: where to set it)."""
        return self.origins[key][0] if key in self.origins else self.source

    def where(self, key: str) -> str:
        """``<file>:<line>: KEY``, the file config/common.env or the environment's (or
        ``<env file>: KEY`` for a default), for messages."""
        if key in self.origins:
            path, line = self.origins[key]
            return f"{path}:{line}: {key}"
        line = self.lines.get(key)
        return f"{self.source}:{line}: {key}" if line else f"{self.source}: {key}"


#: Every key an environment file may set, in declaration order. `config/example.env` and
#: docs/configuration.md document exactly these (tests keep them in step).
KEYS: tuple[Key, ...] = tuple(declared(Settings).values())
KEYS_BY_NAME = {key.name: key for key in KEYS}
#: The hook points an environment file attaches a command to (``HOOK_<POINT>``).
HOOK_POINTS = tuple(
    key.name[len("HOOK_") :].lower() for key in KEYS if key.name.startswith("HOOK_")
)
