"""Where things live on a host, and the formats of the files fabdeploy keeps there.

```
<deploy_root>/
  releases/<release>/           one per deploy; REVISION inside; .venv and .env are links
  venvs/<hash>/                 shared by releases whose resolved packages and Python match
  shared/.env                   the app's secrets, 0600, owned by the app user
  shared/log/                   gunicorn's and the app's log files (rotated)
  shared/pids/gunicorn.pid      the gunicorn master's pid
  shared/gunicorn.conf.py       gunicorn's settings, rendered by setup
  current -> releases/<release> switched by renaming a temporary link over it
  .lock/owner                   mkdir-atomic deploy lock: who, pid, where, since when, why,
                                the deploy id and the token that releases it
  .incoming/                    archives and smoke logs of a deploy in progress (temporary)
  .switch/                      each switch's script, log and exit status (it runs detached)
  revisions.log                 one audit line per deploy or rollback, appended only
```
Every module asks `Layout` for paths; none spells them itself.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Written into a venv once its packages are in; a venv dir without it is rebuilt.
VENV_MARKER = ".fabdeploy-complete"


@dataclass(frozen=True)
class Layout:
    """The paths under one deploy root."""

    root: str

    @property
    def releases(self) -> str:
        return f"{self.root}/releases"

    @property
    def venvs(self) -> str:
        return f"{self.root}/venvs"

    @property
    def shared(self) -> str:
        return f"{self.root}/shared"

    @property
    def env_file(self) -> str:
        return f"{self.root}/shared/.env"

    @property
    def logs(self) -> str:
        return f"{self.root}/shared/log"

    @property
    def pids(self) -> str:
        return f"{self.root}/shared/pids"

    @property
    def pidfile(self) -> str:
        return f"{self.root}/shared/pids/gunicorn.pid"

    @property
    def error_log(self) -> str:
        """gunicorn's error log, which also captures the app's output."""
        return f"{self.root}/shared/log/error.log"

    @property
    def access_log(self) -> str:
        return f"{self.root}/shared/log/access.log"

    @property
    def gunicorn_conf(self) -> str:
        return f"{self.root}/shared/gunicorn.conf.py"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def current_tmp(self) -> str:
        """The temporary link renamed over `current` to switch it atomically."""
        return f"{self.root}/.current.tmp"

    @property
    def lock(self) -> str:
        return f"{self.root}/.lock"

    @property
    def incoming(self) -> str:
        """Where archives land before they are unpacked; emptied by the next upload."""
        return f"{self.root}/.incoming"

    @property
    def switch_runs(self) -> str:
        """Where each switch, run detached from the SSH session, keeps its log and status."""
        return f"{self.root}/.switch"

    @property
    def revisions_log(self) -> str:
        return f"{self.root}/revisions.log"

    def release(self, name: str) -> str:
        """The directory of release ``name``."""
        return f"{self.releases}/{name}"

    def venv(self, digest: str) -> str:
        """The virtualenv keyed by ``digest``."""
        return f"{self.venvs}/{digest}"


def unit_file(app_name: str) -> str:
    """The systemd unit file of the app's service."""
    return f"/etc/systemd/system/{app_name}.service"


def logrotate_file(app_name: str) -> str:
    """The logrotate rule for the app's logs."""
    return f"/etc/logrotate.d/{app_name}"


#: fabdeploy's local state in the project (the wheel cache): never shipped, never "dirty".
LOCAL_STATE = ".fabdeploy"
