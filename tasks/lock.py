"""``fab lock``, ``fab lock.status`` and ``fab unlock``: the deploy lock, held, shown and
released by hand.

``fab lock --reason "..."`` holds the lock on every host (the primary host first:
`primary_first`) until ``fab unlock``; ``fab lock.status`` shows who holds it; ``fab unlock``
releases the lock ``fab lock`` took here, by its token, or breaks whoever's, logged in
revisions.log. The lock itself, its owner, token, waits and breaks, is
`tasks.host.lockfile`'s (docs/lock.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke import Collection, task

from .config.project import fab_command
from .core.errors import FabdeployError, HostError, detail
from .core.paths import local_state
from .core.report import JSON_HELP, print_json
from .host.lockfile import (
    LockOwner,
    break_line,
    describe_held,
    describe_lock,
    gather_held,
    held_json,
    new_id,
    parse_held,
    read_lock,
    release_lock,
    saved_token,
    take_lock,
)
from .ssh import fanout, session
from .ssh.fanout import primary_first

if TYPE_CHECKING:
    from .ssh.host import Host


@task(
    name="hold",
    help={"reason": "why the hosts are locked (required; shown to every deploy it stops)"},
)
def hold(c, reason=""):  # type: ignore[no-untyped-def]
    """Lock every host until `fab unlock`: deploys and rollbacks wait or fail, naming why."""
    if not reason.strip():
        raise FabdeployError('say why: fab lock --reason "..." (deploys that find it show it)')
    settings, hosts = session.session(c, fleet=True)  # -H a,b: one lock, one token for all
    if not hosts:
        return  # `fab -H a,b lock`: this host was locked with the others
    owner = LockOwner.mine(reason=reason, held=True, deploy_id=f"lock-{new_id()}")
    done = primary_first(settings, hosts, lambda h: take_lock(h, owner))
    try:
        if done.failed:
            for host, error in done.items():
                if host in done.failed:
                    host.output.line(host.name, f"failed: {detail(error)}", err=True)
                else:
                    release_lock(host, owner)
                    host.say("lock released again: not every host could be locked")
            names = ", ".join(h.name for h in done.failed)
            raise FabdeployError(f"lock failed on {names}: no host is left locked by this command")
        path = local_state(settings).lock_token
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(owner.token + "\n", encoding="utf-8")
        for host in hosts:
            host.say(f'locked: "{owner.reason}" (lock id {owner.deploy_id})')
        hosts[0].output.say(
            f"held until `{fab_command(settings, 'unlock')}` (from this machine it releases the lock "
            f"by its token, {owner.token}; elsewhere `unlock --token {owner.token}`)"
        )
    finally:
        for host in hosts:
            host.close()


@task(name="status", help={"json": JSON_HELP})
def status(c, json=False):  # type: ignore[no-untyped-def]
    """Show who holds the deploy lock on each host, since when, why, and the deploy id."""
    settings, hosts = session.session(c, data_on_stdout=json)
    replies = gather_held(hosts, settings)
    output = hosts[0].output
    if json:
        print_json([held_json(reply) for reply in replies], output.clean)
    else:
        for reply in (r for r in replies if not r.error):
            found = parse_held(reply.text)
            output.line(reply.host, f"locked by {describe_held(*found)}" if found else "not locked")
    fanout.report_errors(output, replies)
    fanout.fail_if_unanswered(replies, "lock.status")


@task(help={"token": "release only the lock with this token (the one `fab lock` printed)"})
def unlock(c, token=""):  # type: ignore[no-untyped-def]
    """Release the deploy lock `fab lock` took here, or break whoever's (logged)."""
    settings, hosts = session.session(c, fleet=True)  # -H a,b: every host, then the token file
    if not hosts:
        return
    mine = token or saved_token(settings)

    def work(host: Host) -> None:
        found = read_lock(host)
        if found is None:
            host.say("no deploy lock")
            return
        holder, now = found
        held = describe_lock(holder, now)
        theirs = holder.token if holder else ""
        if mine and theirs == mine:
            release_lock(host, token=mine)
            host.say(f"released the deploy lock held by {held}")
        elif token:
            raise HostError(
                host.name, f"the deploy lock held by {held} has another token: left in place"
            )
        else:
            release_lock(host, token=theirs, audit=break_line(held, "fab unlock"))
            host.say(f"removed the deploy lock held by {held} (recorded in revisions.log)")

    fanout.on_each_host(c, "unlock", work, hosts)
    if mine and not token:
        local_state(settings).lock_token.unlink(missing_ok=True)


ns = Collection("lock")
ns.add_task(hold, default=True)
ns.add_task(status)
