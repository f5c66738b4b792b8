"""The keys, each declared once; the settings object; env-file loading."""

from __future__ import annotations

from ..core.errors import ConfigError
from .envfile import read_env_file
from .key import Key, setting
from .load import build, load, load_secrets, parse_values, secrets_files
from .named import NAMED_KEY, SETTING_KEY, app_settings, check_roles, host_key, named_values
from .parse import GUNICORN_WORKERS, RESERVED_IN_RELEASE
from .project import (
    NOT_ENVIRONMENTS,
    environments,
    fabfile_location,
    find_project_dir,
    project_dir,
    selected_environment,
    state,
)
from .reference import example_env, summary_table
from .settings import (
    COMMON,
    DEFAULT_ENVIRONMENT,
    HOOK_POINTS,
    KEYS,
    KEYS_BY_NAME,
    WEB,
    Secrets,
    Settings,
)

__all__ = [
    "COMMON",
    "DEFAULT_ENVIRONMENT",
    "GUNICORN_WORKERS",
    "HOOK_POINTS",
    "KEYS",
    "KEYS_BY_NAME",
    "NAMED_KEY",
    "NOT_ENVIRONMENTS",
    "RESERVED_IN_RELEASE",
    "SETTING_KEY",
    "WEB",
    "ConfigError",
    "Key",
    "Secrets",
    "Settings",
    "app_settings",
    "build",
    "check_roles",
    "environments",
    "example_env",
    "fabfile_location",
    "find_project_dir",
    "host_key",
    "load",
    "load_secrets",
    "named_values",
    "parse_values",
    "project_dir",
    "read_env_file",
    "secrets_files",
    "selected_environment",
    "setting",
    "state",
    "summary_table",
]
