"""The settings object: one environment's keys, validated and typed, and the app's secrets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import secretsfile

#: The environment used when the command line names none.
DEFAULT_ENVIRONMENT = "default"
#: The process gunicorn serves; every other process is a companion named by PROCESS_<NAME>.
WEB = "web"


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
