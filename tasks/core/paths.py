"""Where things live: on a host (`Layout`, `layout(settings)`) and in the project on this
machine (`LocalState`, `local_state(settings)`).

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
Every module asks `layout(settings)` for paths; none spells them itself.

In the project, fabdeploy's own files (`LOCAL_STATE`; never shipped, never "dirty"):

```
.fabdeploy/
  deploys/<environment>.json    the last deploy's summary, for `deploy --resume`
  locks/<environment>.token     the token of the lock `fab lock` took
  wheels/<key>/                 wheelhouses, one per requirements and tag set
  test-venvs/<key>/             the test command's venvs (the newest few are kept)
  tmp/build-<pid>-*/            a build's work dirs (removed when their fab is gone)
```
Every module asks `local_state(settings)` for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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


class Rooted(Protocol):
    """What `layout` reads: the settings (`tasks.config.Settings`) and their DEPLOY_ROOT."""

    @property
    def deploy_root(self) -> str: ...


def layout(settings: Rooted) -> Layout:
    """The paths under the deploy root of ``settings`` (DEPLOY_ROOT): the one way to them."""
    return Layout(settings.deploy_root)


def unit_file(app_name: str) -> str:
    """The systemd unit file of the app's service."""
    return f"/etc/systemd/system/{app_name}.service"


def logrotate_file(app_name: str) -> str:
    """The logrotate rule for the app's logs."""
    return f"/etc/logrotate.d/{app_name}"


#: fabdeploy's local state in the project (`LocalState`): never shipped, never "dirty".
LOCAL_STATE = ".fabdeploy"


@dataclass(frozen=True)
class LocalState:
    """fabdeploy's files in one project (``<project>/.fabdeploy``) for one environment."""

    project_dir: Path
    environment: str

    @property
    def root(self) -> Path:
        return self.project_dir / LOCAL_STATE

    @property
    def deploy_record(self) -> Path:
        """The last deploy of the environment (`tasks.engine.resume`)."""
        return self.root / "deploys" / f"{self.environment}.json"

    @property
    def lock_token(self) -> Path:
        """The token of the lock `fab lock` took for the environment."""
        return self.root / "locks" / f"{self.environment}.token"

    @property
    def wheels(self) -> Path:
        """The wheelhouses, each in a directory named by its cache key."""
        return self.root / "wheels"

    @property
    def test_venvs(self) -> Path:
        """The test command's venvs, each in a directory named by its key."""
        return self.root / "test-venvs"

    @property
    def tmp(self) -> Path:
        """The builds' work dirs."""
        return self.root / "tmp"


class InProject(Protocol):
    """What `local_state` reads: the settings' project dir and environment."""

    @property
    def project_dir(self) -> Path: ...

    @property
    def environment(self) -> str: ...


def local_state(settings: InProject) -> LocalState:
    """fabdeploy's files in the project of ``settings``, for its environment."""
    return LocalState(settings.project_dir, settings.environment)
