"""`bjgrid apps` and `bjgrid cancel`: the applications on the LAN."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click
from rich.table import Table

from bonjourgrid.daemon.local_messages import AppsReply, AppsRequest, CancelApp, Ok

from .context import Ctx, pass_ctx, setup_logging
from .daemon_client import daemon_session
from .proofs import request_proof, sign_key_option


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.option("--timeout", type=click.FloatRange(min=0.2), default=3.0, show_default=True)
@pass_ctx
def apps(ctx: Ctx, as_json: bool, timeout: float) -> None:
    """List the applications coordinated on the LAN (and the ones this machine keeps)."""
    setup_logging(ctx.verbose)

    async def go() -> list[object]:
        async with daemon_session(ctx) as s:
            if s.private is not None and s.private.discovery is not None:
                await s.private.discovery.wait_settled(ctx.config.browse_settle)
            reply = await s.call(AppsRequest(timeout), timeout=timeout + 1)
        assert isinstance(reply, AppsReply)
        return reply.apps

    rows = asyncio.run(go())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(box=None, pad_edge=False)
    for col in ("APP", "NAME", "USER", "COORDINATOR", "TERM", "STATE"):
        table.add_column(col)
    for r in rows:
        assert isinstance(r, dict)
        table.add_row(
            *(str(r.get(k, "")) for k in ("app", "name", "user", "coordinator", "term", "state"))
        )
    ctx.out.print(table)


@click.command()
@click.argument("app_id")
@sign_key_option
@pass_ctx
def cancel(ctx: Ctx, app_id: str, sign_key: Path | None) -> None:
    """Cancel APP_ID: its tasks stop and its machines are released.

    A signed app is cancelled only for its submitter (the key that signed it); exit status 4
    when no coordinator cancels it.
    """
    setup_logging(ctx.verbose)

    async def go() -> str:
        async with daemon_session(ctx) as s:
            proof = request_proof(ctx, s, "cancel", app_id, sign_key)
            reply = await s.call(CancelApp(app_id, proof))
        assert isinstance(reply, Ok)
        return reply.message

    click.echo(asyncio.run(go()))
