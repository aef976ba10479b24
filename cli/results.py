"""`bjgrid results APP_ID`: fetch an app's outputs (all so far, if it still runs)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from bonjourgrid.daemon.local_messages import FetchResults, Results

from .context import EXIT_GRID_FAILED, EXIT_OK, EXIT_TASKS_FAILED, Ctx, pass_ctx, setup_logging
from .daemon_client import daemon_session
from .submit import task_rows, write_results


@click.command()
@click.argument("app_id")
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where outputs go (default: ./<name>-results/).",
)
@pass_ctx
def results(ctx: Ctx, app_id: str, output: Path | None) -> None:
    """Write APP_ID's outputs and results.json.

    \b
    Exit status: 0 complete and all done; 1 complete with failures; 3 still running (what
    is done so far is written); 4 no machine holds the app.
    """
    setup_logging(ctx.verbose)
    reply = asyncio.run(_fetch(ctx, app_id))
    out = output or Path(f"{reply.name}-results")
    write_results(reply, out)
    tasks = task_rows(reply.results)
    failed = any(t.get("state") == "failed" for t in tasks)
    click.echo(f"app {reply.app}: {reply.outcome or 'running'}; outputs in {out}/", err=True)
    if not reply.complete:
        sys.exit(EXIT_GRID_FAILED)
    sys.exit(EXIT_TASKS_FAILED if failed or reply.outcome != "finished" else EXIT_OK)


async def _fetch(ctx: Ctx, app_id: str) -> Results:
    async with daemon_session(ctx) as session:
        reply = await session.call(FetchResults(app_id), timeout=300)
    assert isinstance(reply, Results)
    return reply
