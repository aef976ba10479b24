"""`bjgrid results APP_ID`: fetch an app's outputs (all so far, if it still runs)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from bonjourgrid.coordinator import manifest
from bonjourgrid.daemon.local_messages import FetchResults, Results

from .context import (
    EXIT_GRID_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_TASKS_FAILED,
    Abort,
    Ctx,
    pass_ctx,
    setup_logging,
)
from .daemon_client import daemon_session
from .proofs import request_proof, sign_key_option
from .submit import task_rows, write_results


@click.command()
@click.argument("app_id")
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where outputs go (default: ./<name>-results/).",
)
@sign_key_option
@pass_ctx
def results(ctx: Ctx, app_id: str, output: Path | None, sign_key: Path | None) -> None:
    """Write APP_ID's outputs and results.json.

    A signed app's results are given only to its submitter (the key that signed it). Every
    answer is checked against its holder's result manifest (each output's SHA-256) before
    anything is written.

    \b
    Exit status: 0 complete and all done; 1 complete with failures; 3 still running (what
    is done so far is written); 4 no machine holds the app, or none gives it to you.
    """
    setup_logging(ctx.verbose)
    reply = asyncio.run(_fetch(ctx, app_id, sign_key))
    check(app_id, reply)
    out = output or Path(f"{reply.name}-results")
    write_results(reply, out)
    tasks = task_rows(reply.results)
    failed = any(t.get("state") == "failed" for t in tasks)
    click.echo(f"app {reply.app}: {reply.outcome or 'running'}; outputs in {out}/", err=True)
    if not reply.complete:
        sys.exit(EXIT_GRID_FAILED)
    sys.exit(EXIT_TASKS_FAILED if failed or reply.outcome != "finished" else EXIT_OK)


def check(app_id: str, reply: Results) -> None:
    """Refuse (exit 4) an answer whose outputs, table and manifest do not agree."""
    try:
        files = manifest.digests(reply.outputs)
    except manifest.ManifestError as e:
        raise Abort(f"app {app_id}: the outputs from {reply.holder} are unreadable: {e}") from e
    problems = manifest.check_answer(
        app_id,
        reply.manifest,
        complete=reply.complete,
        outcome=reply.outcome,
        results=reply.results,
        files=files,
    )
    if problems:
        raise Abort(
            f"app {app_id}: the answer from {reply.holder or 'the daemon'} does not match its "
            f"result manifest ({'; '.join(problems[:5])}); nothing written",
            EXIT_NOT_FOUND,
        )


async def _fetch(ctx: Ctx, app_id: str, sign_key: Path | None) -> Results:
    async with daemon_session(ctx) as session:
        proof = request_proof(ctx, session, "results", app_id, sign_key)
        reply = await session.call(FetchResults(app_id, proof), timeout=300)
    assert isinstance(reply, Results)
    return reply
