"""The deploy flow and rollback: lists of named steps, like Capistrano's framework.rake.

`DEPLOY` is the deploy, `ROLLBACK` the rollback, `RELEASE` ``upload.release`` (a deploy
that stops before the switch); `tasks.engine.runner.execute` runs a list, with the hooks of each
step around it, and ``fab plan``, the summary table and docs/architecture.md read the same
lists. In order (``[migrate]`` with MIGRATE_COMMAND):

```
preflight -> lock -> check -> build -> compare -> test -> upload -> install -> [migrate]
          -> smoke -> switch -> processes -> cleanup -> record -> unlock (always)
```

``preflight`` (files, settings, git state: no time) runs first and locally, so a missing
file or an uncommitted change touches no host. ``lock`` takes the deploy lock, on the primary host first (it decides which command owns
the fleet: of two concurrent deploys exactly one proceeds) and then on the others, and in the
same SSH session learns what ``check`` needs (`tasks.host.facts.Facts`, the releases); ``compare``
stops a deploy of what every host serves already (a no-op: no tests run). ``test`` runs the
app's suite locally, in its test venv, before anything is uploaded: a failing suite changes
no host (the lock is released; nothing is left for ``--resume``). Across a
fleet (the hosts of the environment file, or of ``fab -H a,b deploy``: ``--per-host`` keeps
Fabric's loop of one deploy per host) upload, install and smoke run on every host at once,
PARALLEL at a time, all or nothing: a host that fails stops the deploy with no host
switched; MIGRATE_COMMAND runs once, on the primary host, between install and smoke. The
switch then goes in batches of SWITCH_BATCH hosts, each behind its health check; a batch that
fails goes back to the release it served and the deploy stops, the summary saying which host
serves what. Once every host switched, the companion processes (`tasks.host.processes`) restart
onto the new release. ``cleanup`` and ``record`` decide here and send their work with
``unlock``: one session for the three.

Any failure before the switch leaves a host serving what it served, the half-made release
removed and a ``failed`` line recorded. ``unlock`` always runs; a lock left by a ``fab`` that
died on this machine is stale and broken, saying so.
"""

from __future__ import annotations

from dataclasses import replace

from ..engine.step import BATCHES, FIRST, HOSTS, LAST, LOCAL, PRIMARY, Step, points
from .finish import plan_cleanup, record_result, say_ready, unlock_hosts
from .prepare import (
    build_release,
    check_hosts,
    check_locally,
    companion_hosts,
    compare_revisions,
    has_migration,
    install_release,
    lock_hosts,
    locked_hosts,
    migrate_hosts,
    run_migrations,
    run_tests,
    ship_release,
    skip_test,
    smoke_test,
)
from .provision import set_up_host
from .rollback import agree_on_release, choose_release
from .switch import (
    ROLLBACK_UNDO,
    SWITCH_UNDO,
    bake_canary,
    processes_failed,
    restart_processes,
    switch_one,
    undo_everywhere,
)

#: After install: its own point and the older ``after_upload`` (the release is ready to run).
AFTER_INSTALL = ("after_install", "after_upload")


#: Each step, declared once; the lists below are made of them.
PREFLIGHT = Step("preflight", check_locally, LOCAL)
LOCK = Step("lock", lock_hosts, HOSTS, primary=FIRST)
CHECK = Step("check", check_hosts, HOSTS)
BUILD = Step("build", build_release, LOCAL)
COMPARE = Step("compare", compare_revisions, LOCAL)
TEST = Step("test", run_tests, LOCAL, skip=skip_test)
UPLOAD = Step("upload", ship_release, HOSTS, recover=undo_everywhere, after=(), phase="prepare")
INSTALL = Step(
    "install", install_release, HOSTS, recover=undo_everywhere, after=AFTER_INSTALL,
    phase="prepare",
)  # fmt: skip
MIGRATE = Step(
    "migrate", run_migrations, PRIMARY, hosts=migrate_hosts, when=has_migration,
    recover=undo_everywhere,
)  # fmt: skip
SMOKE = Step("smoke", smoke_test, HOSTS, recover=undo_everywhere)
SWITCH = Step("switch", switch_one, BATCHES, undo=SWITCH_UNDO, bake=bake_canary)
PROCESSES = Step("processes", restart_processes, HOSTS, hosts=companion_hosts, recover=processes_failed)  # fmt: skip
CLEANUP = Step("cleanup", plan_cleanup, HOSTS)
RECORD = Step("record", record_result, HOSTS)
UNLOCK = Step("unlock", unlock_hosts, HOSTS, hosts=locked_hosts, always=True, primary=LAST)
CHOOSE = Step("choose", choose_release, HOSTS)
AGREE = Step("agree", agree_on_release, LOCAL)
#: The rollback's switch: no hook points of its own, and a failed batch removes no release.
SWITCH_BACK = replace(SWITCH, undo=ROLLBACK_UNDO, before=(), after=(), bake=None)
READY = Step("ready", say_ready, HOSTS)

#: The deploy, step by step (docs/architecture.md).
DEPLOY = (
    PREFLIGHT, LOCK, CHECK, BUILD, COMPARE, TEST, UPLOAD, INSTALL, MIGRATE, SMOKE, SWITCH,
    PROCESSES, CLEANUP, RECORD, UNLOCK,
)  # fmt: skip
#: The rollback: the release chosen on every host, switched in batches (no switch hooks).
ROLLBACK = (LOCK, CHECK, CHOOSE, AGREE, SWITCH_BACK, PROCESSES, RECORD, UNLOCK)
#: ``upload.release``: a deploy that stops before the switch (the release stays, unswitched).
RELEASE = (LOCK, CHECK, BUILD, UPLOAD, INSTALL, READY, UNLOCK)
SETUP = (Step("setup", set_up_host, HOSTS),)
#: The commands and their lists, for the hooks' check and the docs.
COMMANDS = {"deploy": DEPLOY, "rollback": ROLLBACK, "release": RELEASE, "setup": SETUP}


def known_points() -> set[str]:
    """Every hook point of every command."""
    found: set[str] = set()
    for action, steps in COMMANDS.items():
        local, on_hosts = points(action, steps)
        found.update(local, on_hosts)
    return found


#: ``fab setup``: one step on every host, with the before_setup and after_setup hooks.
