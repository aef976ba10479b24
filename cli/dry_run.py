"""`bjgrid submit --dry-run`: the app expanded, and per task how many volunteers fit it.

Nothing is recruited and nothing is submitted: the daemon matches each task's requirements
against the volunteers it sees (coordinator/matchmaking.fit_rows) and says why a task would
wait. Exit status 0 when every task has a volunteer that could run it, 3 when some task has
none that ever could (it would wait, or fail with --wait-timeout), 2 for bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click
from rich.table import Table

from bonjourgrid.app.spec import AppSpec
from bonjourgrid.daemon.local_messages import DryRun, DryRunReply

from . import backend_needs, outcome
from .context import EXIT_GRID_FAILED, EXIT_OK, Ctx
from .daemon_client import daemon_session
from .local_workers import local_workers


def run(ctx: Ctx, spec: AppSpec, *, as_json: bool, local: int | None, timeout: float) -> int:
    """Ask the daemon, print the table (or one JSON object), return the exit status."""
    reply = asyncio.run(_ask(ctx, spec, local, timeout))
    rows = [r for r in reply.tasks if isinstance(r, dict)]
    never = [r for r in rows if not r.get("could")]
    code = EXIT_GRID_FAILED if never else EXIT_OK
    needs = backend_needs.missing(spec.backend, backend_needs.probe(spec.backend))
    missing = backend_needs.explain(spec.backend, needs) if needs else ""
    if as_json:
        outcome.print_json(
            {
                "name": spec.name,
                "backend": spec.backend,
                "seen": reply.seen,
                "tasks": rows,
                "missing_here": missing,
                "exit_status": code,
            }
        )
        return code
    table = Table(box=None, pad_edge=False)
    for col in ("TASK", "FIT NOW", "COULD", "WOULD WAIT BECAUSE"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), str(r["fit_now"]), str(r["could"]), str(r["reason"]))
    ctx.out.print(table)
    click.echo(
        f"{spec.name}: {len(rows)} tasks, backend {spec.backend}, {reply.seen} volunteers "
        "seen; nothing was recruited",
        err=True,
    )
    if missing:
        click.echo(f"bjgrid: {missing}", err=True)
    return code


@contextlib.contextmanager
def _peers(ctx: Ctx, n: int | None) -> Iterator[list[tuple[str, int]] | None]:
    if not n:
        yield None
        return
    with (
        tempfile.TemporaryDirectory(prefix="bjgrid-dry-") as tmp,
        local_workers(ctx, n, Path(tmp)) as peers,
    ):
        yield peers


async def _ask(ctx: Ctx, spec: AppSpec, local: int | None, timeout: float) -> DryRunReply:
    with _peers(ctx, local) as peers:
        kw = {} if peers is None else {"mdns": False, "static_peers": peers}
        async with daemon_session(ctx, **kw) as s:  # type: ignore[arg-type]
            if s.private is not None and s.private.discovery is not None:
                await s.private.discovery.wait_settled(ctx.config.browse_settle)
            if peers:  # local workers answer pings: give the daemon a moment to learn them
                await asyncio.sleep(min(2.0, timeout))
            reply = await s.call(DryRun(spec.to_json(), timeout), timeout=timeout + 5)
    assert isinstance(reply, DryRunReply)
    return reply
