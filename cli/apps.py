"""`bjgrid apps` and `bjgrid cancel`: the applications on the LAN."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bonjourgrid.daemon.local_messages import AppsReply, AppsRequest, CancelApp, Ok

from . import outcome
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

    rows = [r for r in asyncio.run(go()) if isinstance(r, dict)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    render(ctx.out, rows)


def render(console: Console, rows: list[dict[str, object]]) -> None:
    """The table, then each waiting reason on a line of its own (it does not fit a column).
    Everything is Text: names and reasons come from the network, never markup."""
    table = Table(box=None, pad_edge=False)
    body = [cells(r) for r in rows]
    heads = ["APP", "NAME", "USER", "COORDINATOR", "STATE", *_COUNTS.values(), "AGE"]
    widths = [max([len(h), *(len(c[i]) for c in body)]) for i, h in enumerate(heads)]
    # At the terminal's width the name and the coordinator's host give way (cut with …);
    # the id, the user, the state, the counts and the age never do.
    over = sum(widths) + 2 * (len(heads) - 1) - console.width
    while over > 0 and max(widths[1], widths[3]) > 6:  # the wider of the two first
        widths[1 if widths[1] >= widths[3] else 3] -= 1
        over -= 1
    for i, col in enumerate(heads):
        table.add_column(col, justify="left" if col in _TEXT else "right", no_wrap=True,
                         max_width=widths[i], min_width=widths[i] if i not in (1, 3) else None,
                         overflow="ellipsis")  # fmt: skip
    for row in body:
        table.add_row(*(Text(c) for c in row))
    console.print(table)
    for r in rows:
        if r.get("waiting_reason"):
            console.print(Text(f"{r['app']} waiting: {r['waiting_reason']}"))


_TEXT = ("APP", "NAME", "USER", "COORDINATOR", "STATE")
_COUNTS = {"done": "DONE", "running": "RUN", "waiting": "WAIT", "failed": "FAIL",
           "cancelled": "CANC"}  # fmt: skip
"""Count columns. CANC: tasks that never ran (cancelled, or skipped after a failed
predecessor; ``--json`` keeps ``cancelled`` and ``skipped`` apart)."""


def age(seconds: object) -> str:
    """``42s``, ``7m``, ``3h``, ``2d``; "-" when unknown (an app seen by its record only)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        return "-"
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def cells(r: dict[str, object]) -> list[str]:
    """One row of the table; counts only for apps this machine holds ("-" otherwise)."""

    def number(k: str) -> int | None:
        v = r.get(k)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def count(k: str) -> str:
        v = number(k)
        if k == "cancelled" and v is not None:
            v += number("skipped") or 0
        return "-" if v is None else str(v)

    head = [str(r.get(k, "")) for k in ("app", "name", "user", "coordinator", "state")]
    return [*head, *(count(k) for k in _COUNTS), age(r.get("age"))]


@click.command()
@click.argument("app_id")
@click.option("--json", "as_json", is_flag=True, help="Stdout is exactly one JSON object.")
@sign_key_option
@pass_ctx
def cancel(ctx: Ctx, app_id: str, as_json: bool, sign_key: Path | None) -> None:
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

    with outcome.json_errors(as_json, app_id):
        message = asyncio.run(go())
    if as_json:
        outcome.print_json({"app": app_id, "cancelled": True, "message": message, "exit_status": 0})
    else:
        click.echo(message)
