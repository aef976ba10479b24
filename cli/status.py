"""`bjgrid status`: the machines of this grid on the LAN."""

from __future__ import annotations

import asyncio
import json
import time
import webbrowser

import click
from rich.table import Table

from bonjourgrid.daemon.local_messages import StatusReply, StatusRequest

from .context import EXIT_GRID_FAILED, Abort, Ctx, pass_ctx, setup_logging
from .daemon_client import daemon_answers, daemon_session


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON array (fields: see docs).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.2),
    default=3.0,
    show_default=True,
    help="Seconds the whole command may take.",
)
@click.option(
    "--web",
    is_flag=True,
    help="Print the URL (with its token) of the live web view this machine's daemon serves "
    "(`bjgrid join`/`serve --web-listen`; docs/web.md) instead of the table.",
)
@click.option(
    "--open", "open_browser", is_flag=True, help="With --web: also open the URL in a browser."
)
@pass_ctx
def status(ctx: Ctx, as_json: bool, timeout: float, web: bool, open_browser: bool) -> None:
    """List this grid's machines: idle or worker, reachable or not, and what they run.

    Every listed machine is asked directly over the authenticated control channel; one that
    does not answer in time is shown as unreachable (it may have crashed: mDNS alone keeps a
    crashed machine listed for a long time).
    """
    setup_logging(ctx.verbose)
    if web or open_browser:
        _web(ctx, open_browser)
        return
    rows = asyncio.run(_status(ctx, timeout))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(box=None, pad_edge=False)
    for col in (
        "HOST",
        "ID",
        "STATE",
        "REACHABLE",
        "CPUS",
        "SLOTS",
        "APP",
        "COORDINATES",
        "ISOLATION",
        "ADDRESSES",
    ):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["host"]),
            str(r["id"]),
            str(r["state"]) + _owner(r),
            "yes" if r["reachable"] else "NO",
            str(r["cpus"]),
            str(r["slots"]),
            str(r["app"] or "-"),
            _joined(r["coordinates"]),
            str(r.get("isolation") or "-"),
            _joined(r["addresses"]),
        )
    ctx.out.print(table)
    for r in rows:
        if r.get("isolation") in ("none", "unisolated"):
            what = "refuses tasks" if r["isolation"] == "none" else "runs tasks unisolated"
            why = r.get("isolation_reason") or "see its log"  # from the network: no markup
            ctx.out.print(f"{r['host']} {what}: {why}", markup=False)
        if r.get("refused"):
            ctx.out.print(f"{r['host']} ({r['id']}) refused us: {r['refused']}", markup=False)
    ctx.out.print(f"{len(rows)} machine(s) on grid {ctx.key().grid_id}")


async def _status(ctx: Ctx, timeout: float) -> list[dict[str, object]]:
    start = time.monotonic()
    async with daemon_session(ctx) as session:
        left = timeout - (time.monotonic() - start)
        reply = await session.call(StatusRequest(max(0.2, left - 0.1)), timeout=left + 1)
    assert isinstance(reply, StatusReply)
    return [r for r in reply.machines if isinstance(r, dict)]


def _web(ctx: Ctx, open_browser: bool) -> None:
    """The web view's URL (with its token) from the running daemon's state dir."""
    from bonjourgrid.web.hook import url_file

    path = url_file(ctx.paths.state_dir)
    try:
        url = path.read_text().strip() if daemon_answers(ctx) else ""
    except FileNotFoundError:
        url = ""
    if not url.startswith("http://"):
        from .demo_web import demo_url

        url = demo_url(ctx.paths.state_dir) or ""  # a `bjgrid demo --web` running here
    if not url.startswith("http://"):
        raise Abort(
            "no web view: start this machine's daemon with `bjgrid join` (or `bjgrid serve`), "
            "without --web-listen off, or run `bjgrid demo --web`",
            EXIT_GRID_FAILED,
        )
    click.echo(url)
    if open_browser and not webbrowser.open(url):
        click.echo("bjgrid: no browser found here; open the URL above", err=True)


def _owner(r: dict[str, object]) -> str:
    """``/paused`` (its owner ran bjgrid pause) or ``/owner-busy`` (its owner is at it): such
    a machine takes no grid work; a worker's tasks are stopped, then given back."""
    if r.get("paused") is True:
        return "/paused"
    return "/owner-busy" if r.get("owner") == "busy" else ""


def _joined(values: object) -> str:
    return ",".join(map(str, values)) if isinstance(values, list) and values else "-"
