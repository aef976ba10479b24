"""`bjgrid pause` / `bjgrid resume`: the owner says "not now" without stopping the daemon.

A pause is a manual "owner active" input of the owner policy (bonjourgrid/policy): running
tasks are stopped at once, and given back to their coordinator after the policy's
``max_suspension``, exactly as when the owner comes back to the keyboard; the machine
advertises ``p=paused`` and takes no new work. The pause is kept in the state dir, so it
holds across a restart of the daemon (or a reboot) until `bjgrid resume`. Only this
machine's user can pause it: the request goes over the daemon's local socket (mode 0600,
peer uid checked); no message from the network pauses a machine.
"""

from __future__ import annotations

import asyncio
import json

import click

from bonjourgrid.control.local_channel import open_local
from bonjourgrid.daemon.local_messages import LOCAL, Failure, Pause, PauseReply
from bonjourgrid.policy import pause as pause_state

from .context import EXIT_GRID_FAILED, Abort, Ctx, pass_ctx

_TIMEOUT = 15.0


async def _ask(ctx: Ctx, paused: bool) -> PauseReply | None:
    """The daemon's answer, or None when no daemon answers on this host's socket."""
    try:
        ch = await open_local(str(ctx.paths.daemon_socket), registry=LOCAL, timeout=2.0)
    except (OSError, asyncio.TimeoutError):
        return None
    try:
        reply = await ch.request(Pause(paused), timeout=_TIMEOUT)
    finally:
        await ch.close()
    if isinstance(reply, Failure):
        raise Abort(reply.message, reply.code)
    if not isinstance(reply, PauseReply):
        raise Abort(f"unexpected answer {type(reply).__name__}", EXIT_GRID_FAILED)
    return reply


def message(reply: PauseReply | None, paused: bool) -> str:
    """What the user is told (pure)."""
    if reply is None:
        if paused:
            return "paused: no daemon runs here; bjgrid join will start paused"
        return "resumed: no daemon runs here; bjgrid join will offer this machine"
    if paused:
        stopped = f"; {reply.tasks} task(s) stopped" if reply.tasks else ""
        return f"paused: this machine takes no grid work until bjgrid resume{stopped}"
    if reply.policy == "ok":
        return "resumed: this machine is offered to the grid again"
    return (
        "resumed; the owner policy sees you at the machine: offered again after "
        f"{reply.resume_after:g} s idle"
    )


def _run(ctx: Ctx, paused: bool, as_json: bool) -> None:
    reply = asyncio.run(_ask(ctx, paused))
    if reply is None:  # no daemon: the next join starts as the user wants
        try:
            pause_state.record(ctx.paths.state_dir, paused)
        except OSError as e:
            raise Abort(f"cannot record the pause in {ctx.paths.state_dir}: {e}", 2) from None
    if as_json:
        doc = {
            "paused": paused,
            "daemon": reply is not None,
            "policy": reply.policy if reply else ("paused" if paused else "ok"),
            "tasks": reply.tasks if reply else 0,
        }
        click.echo(json.dumps(doc))
    else:
        click.echo(message(reply, paused))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@pass_ctx
def pause(ctx: Ctx, as_json: bool) -> None:
    """Say "not now": stop this volunteer's tasks and take no grid work until `resume`.

    Running tasks are suspended and, after the owner policy's max_suspension, given back
    to run elsewhere (nothing is lost). The pause survives a restart of the daemon.
    """
    _run(ctx, True, as_json)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@pass_ctx
def resume(ctx: Ctx, as_json: bool) -> None:
    """Lift `bjgrid pause`: the owner policy decides again when this machine is offered."""
    _run(ctx, False, as_json)
