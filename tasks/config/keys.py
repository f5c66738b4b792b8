"""The keys of an environment file: each one's name, parser, default and help line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from . import parse

#: The hook points an environment file attaches a command to (``HOOK_<POINT>``).
HOOK_POINTS = ("after_upload", "before_switch", "after_switch", "failed")


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
    Key("HOSTS", parse.hosts, "", "Comma-separated [user@]host[:port] to deploy to; -H overrides"),
    Key(
        "SSH_USER",
        parse.user,
        "",
        "SSH login user (the deploy user); empty: Fabric/ssh_config default",
    ),
    Key("SSH_PORT", parse.whole(1), "22", "SSH port for hosts that name none"),
    Key(
        "SSH_KEY", parse.local_path, "", "Private key file to log in with (relative to the project)"
    ),
    Key(
        "KNOWN_HOSTS",
        parse.local_path,
        "",
        "Extra known_hosts file, checked besides ~/.ssh/known_hosts",
    ),
    Key(
        "TRUST_NEW_HOSTS",
        parse.yes_no,
        "no",
        "yes: accept and record keys of hosts never seen before",
    ),
    Key("CONNECT_TIMEOUT", parse.whole(1), "10", "Seconds to wait for an SSH connection"),
    Key("APP_NAME", parse.name, "", "Name of the app: service, unit file and deploy root", True),
    Key("APP_DIR", parse.local_path, ".", "The app's source directory (relative to the project)"),
    Key(
        "REQUIREMENTS", parse.relative_file, "requirements.txt", "Requirements file inside APP_DIR"
    ),
    Key(
        "EXCLUDES",
        parse.comma_list,
        ".git,.venv,__pycache__,*.pyc,.pytest_cache",
        "Patterns left out of a release built from a plain directory",
    ),
    Key("ALLOW_DIRTY", parse.yes_no, "no", "yes: ship uncommitted changes of a git checkout"),
    Key(
        "PREBUILT_PACKAGES",
        parse.yes_no,
        "yes",
        "yes: for hosts whose wheel tags equal the local Python's, install packages locally",
    ),
    Key(
        "PACKAGE_INDEX",
        parse.url,
        "",
        "Package index URL this machine resolves the hosts' packages from; empty: pip's default",
    ),
    Key(
        "HOST_PACKAGE_INDEX",
        parse.url,
        "",
        "Index URL each host pip-installs from itself (nothing shipped); empty: ship packages",
    ),
    Key(
        "DEPLOY_ROOT",
        parse.abs_path,
        "",
        "Directory holding releases on the host; empty: /srv/APP_NAME",
    ),
    Key("APP_USER", parse.user, "", "User the service runs as; empty: the SSH user"),
    Key("PYTHON", parse.python, "python3", "Python interpreter on the host"),
    Key(
        "PYTHON_REQUIRES",
        parse.specifier,
        "",
        "The app's Python versions (PEP 440, e.g. >=3.12); empty: requires-python of pyproject.toml",
    ),
    Key("WSGI_APP", parse.wsgi, "app:app", "gunicorn's WSGI target, MODULE:CALLABLE"),
    Key("BIND", parse.bind, "127.0.0.1:8000", "Address gunicorn listens on, HOST:PORT"),
    Key("WORKERS", parse.whole(1), "2", "gunicorn worker processes"),
    Key(
        "WORKER_CLASS",
        parse.worker_class,
        "sync",
        "gunicorn worker class; uvicorn_worker.UvicornWorker serves an ASGI app",
    ),
    Key("THREADS", parse.whole(1), "1", "Threads per worker (gunicorn's gthread worker uses them)"),
    Key(
        "WORKER_TIMEOUT",
        parse.whole(1),
        "30",
        "Seconds a worker may be silent before it is restarted",
    ),
    Key(
        "MAX_REQUESTS",
        parse.whole(0),
        "0",
        "Requests a worker serves before it is replaced; 0: no limit",
    ),
    Key(
        "MAX_REQUESTS_JITTER",
        parse.whole(0),
        "0",
        "Random extra requests added to MAX_REQUESTS per worker",
    ),
    Key(
        "GUNICORN_CONFIG",
        parse.release_file,
        "",
        "The app's own gunicorn settings file in APP_DIR, read after fabdeploy's",
    ),
    Key("HEALTH_PATH", parse.url_path, "/health", "Path that answers 200 when the app is healthy"),
    Key(
        "HEALTH_HOST",
        parse.host_header,
        "",
        "Host header of every health probe (smoke, switch, health, status); empty: the address probed",
    ),
    Key("HEALTH_TIMEOUT", parse.whole(1), "30", "Seconds a new release has to become healthy"),
    Key(
        "KEEP_RELEASES",
        parse.whole(2),
        "5",
        "Releases kept on each host (current and previous always)",
    ),
    Key("SECRETS_FILE", parse.local_path, "", "Local env file of the app's secrets, uploaded 0600"),
    Key(
        "TEST_COMMAND",
        parse.command,
        "python -m pytest -q",
        "Command run in APP_DIR to gate a deploy, in the test venv; unset: detected (docs/test.md)",
    ),
    Key(
        "TEST_REQUIREMENTS",
        parse.optional_relative_file,
        "",
        "Test requirements file in APP_DIR; empty: a test/dev group or extra, requirements-test.txt",
    ),
    Key(
        "TEST_VENV",
        parse.yes_no,
        "yes",
        "yes: tests run in a local venv of the app's and test requirements; no: in fab's Python",
    ),
    Key(
        "LOG_FILES",
        parse.globs,
        "",
        "The app's own log files (globs under shared/log) for `fab logs`",
    ),
    Key(
        "HOOK_AFTER_UPLOAD",
        parse.command,
        "",
        "Command run in each new release after its venv is ready; 'once:' for one host",
    ),
    Key(
        "HOOK_BEFORE_SWITCH",
        parse.command,
        "",
        "Command run in the new release before the switch (e.g. once: migrations)",
    ),
    Key(
        "HOOK_AFTER_SWITCH",
        parse.command,
        "",
        "Command run in the new release after it serves; 'once:' for one host",
    ),
    Key(
        "HOOK_FAILED",
        parse.command,
        "",
        "Command run locally when a deploy or rollback fails (FABDEPLOY_ERROR, FABDEPLOY_SERVING)",
    ),
    Key(
        "MIGRATE_COMMAND",
        parse.command,
        "",
        "Command run once per deploy on the primary host, in the new release, before smoke",
    ),
    Key(
        "MIGRATE_ON",
        parse.choice("primary", "all"),
        "primary",
        "Where MIGRATE_COMMAND runs: primary (once) or all (every host: host-local databases)",
    ),
    Key(
        "MIGRATE_TIMEOUT",
        parse.whole(0),
        "600",
        "Seconds MIGRATE_COMMAND may run before it is stopped (TERM, then KILL); 0: no limit",
    ),
    Key(
        "SMOKE_COMMAND",
        parse.command,
        "",
        "Command run in each new release before its side-port boot, part of the smoke check",
    ),
    Key(
        "LINKED_DIRS",
        parse.linked,
        "",
        "Directories of the app kept in shared/ and linked into every release (media)",
    ),
    Key(
        "LINKED_FILES",
        parse.linked,
        "",
        "Files of the app kept in shared/ and linked into every release (db.sqlite3)",
    ),
    Key(
        "STOP_TIMEOUT",
        parse.whole(1),
        "60",
        "Seconds a companion process has to stop after TERM before it is killed",
    ),
    Key(
        "PRIMARY_HOST",
        parse.primary,
        "",
        "Host of once: hooks, migrations, exec --once; empty: the first of the web role",
    ),
    Key("PARALLEL", parse.whole(1), "8", "Hosts prepared at once in a fleet deploy"),
    Key(
        "SWITCH_BATCH",
        parse.batch,
        "1,25%",
        "Hosts switched a round: counts or percentages, the last repeating (1,25%: a canary first)",
    ),
)
KEYS_BY_NAME = {key.name: key for key in KEYS}
