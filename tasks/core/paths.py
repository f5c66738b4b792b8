"""Where things live: on a host (`Layout`, `layout(settings)`) and in the project on this
machine (`LocalState`, `local_state(settings)`).

```
<deploy_root>/                  deploy user : app group, 0750 (others cannot look in)
  releases/<release>/           one per deploy, the deploy user's; REVISION inside; .venv and
                                .env are links
  venvs/<hash>/                 the deploy user's; shared by releases whose packages match
  shared/                       the deploy user's; holds the app's data, each entry the app's:
    <LINKED_DIRS, LINKED_FILES> the app user's (0750 / 0640)
    log/                        the app user's: gunicorn's and the app's log files (rotated)
  current -> releases/<release> switched by renaming a temporary link over it
  .lock/owner                   mkdir-atomic deploy lock: who, pid, where, since when, why,
                                the deploy id and the token that releases it
  .incoming/                    archives of a deploy in progress (temporary), 0700
  .switch/                      each switch's script, log and exit status (it runs detached), 0700
  revisions.log                 one audit line per deploy or rollback, appended only
/etc/<app>/                     root : app group, 0750
  settings                      the app's settings (ENV_<NAME>), root : app group, 0640
                                (EnvironmentFile=, read before env)
  env                           the app's secrets, root : app group, 0640 (EnvironmentFile=)
  gunicorn.conf.py              gunicorn's settings, rendered by setup, root : app group, 0640
/run/<app>/                     the unit's RuntimeDirectory=, the app user's:
  gunicorn.pid                  the gunicorn master's pid
  ready.<pid>.<start>           each ready worker's marker (docs/run.md#ready-workers)
```
Only the app's data, logs and runtime files are the app user's; root and the deploy user never
act through a path under them (docs/security.md#ownership).
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
wheels/ and test-venvs/ are caches keyed by their content: with FABDEPLOY_CACHE_DIR set
(`tasks.config.project.cache_dir`), they live there instead, shared by every checkout and
project that uses the same directory.
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
    """The paths of one app on a host: under its deploy root, /etc/<app> and /run/<app>."""

    root: str
    app: str = "app"

    @property
    def etc(self) -> str:
        """Root's directory of the app's rendered settings (root : app group, 0750)."""
        return f"/etc/{self.app}"

    @property
    def run(self) -> str:
        """The service's runtime directory (systemd's RuntimeDirectory=, the app user's)."""
        return f"/run/{self.app}"

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
        """The app's secrets, as systemd's EnvironmentFile= reads them."""
        return f"{self.etc}/env"

    @property
    def settings_file(self) -> str:
        """The app's settings (``ENV_<NAME>``), as systemd's EnvironmentFile= reads them:
        read before `env_file`, in the same format."""
        return f"{self.etc}/settings"

    @property
    def legacy_env_file(self) -> str:
        """Where fabdeploy before the ownership model kept the secrets (setup moves them)."""
        return f"{self.root}/shared/.env"

    @property
    def legacy_gunicorn_conf(self) -> str:
        """Where fabdeploy before the ownership model kept gunicorn.conf.py."""
        return f"{self.root}/shared/gunicorn.conf.py"

    @property
    def legacy_pids(self) -> str:
        """Where fabdeploy before the ownership model kept the pidfile."""
        return f"{self.root}/shared/pids"

    @property
    def logs(self) -> str:
        return f"{self.root}/shared/log"

    @property
    def pids(self) -> str:
        """Where the master's pidfile and the workers' ready markers live."""
        return self.run

    @property
    def pidfile(self) -> str:
        return f"{self.run}/gunicorn.pid"

    @property
    def error_log(self) -> str:
        """gunicorn's error log, which also captures the app's output."""
        return f"{self.root}/shared/log/error.log"

    @property
    def access_log(self) -> str:
        return f"{self.root}/shared/log/access.log"

    @property
    def gunicorn_conf(self) -> str:
        return f"{self.etc}/gunicorn.conf.py"

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
    """What `layout` reads: the settings (`tasks.config.Settings`): DEPLOY_ROOT, APP_NAME."""

    @property
    def deploy_root(self) -> str: ...

    @property
    def app_name(self) -> str: ...


def layout(settings: Rooted) -> Layout:
    """The paths of the app of ``settings`` (DEPLOY_ROOT, APP_NAME): the one way to them."""
    return Layout(settings.deploy_root, settings.app_name)


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
    shared: Path | None = None  # FABDEPLOY_CACHE_DIR: where wheels/ and test-venvs/ go instead

    @property
    def root(self) -> Path:
        return self.project_dir / LOCAL_STATE

    @property
    def cache(self) -> Path:
        """Where the caches keyed by content live: the shared dir, else `root`."""
        return self.shared or self.root

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
        return self.cache / "wheels"

    @property
    def build(self) -> Path:
        """BUILD_COMMAND's outputs, each set in a directory named by its cache key."""
        return self.root / "build"

    @property
    def test_venvs(self) -> Path:
        """The test command's venvs, each in a directory named by its key."""
        return self.cache / "test-venvs"

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

    @property
    def cache_dir(self) -> Path | None: ...


def local_state(settings: InProject) -> LocalState:
    """fabdeploy's files in the project of ``settings``, for its environment."""
    return LocalState(settings.project_dir, settings.environment, settings.cache_dir)
