"""`bjgrid results APP_ID`: fetch an app's outputs (all so far, if it still runs)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from bonjourgrid.coordinator import manifest
from bonjourgrid.daemon.local_messages import FetchResults, Results

from . import outcome
from .app_follow import write_results
from .context import (
    EXIT_NOT_FOUND,
    Abort,
    Ctx,
    pass_ctx,
    setup_logging,
)
from .daemon_client import daemon_session
from .proofs import request_proof, sign_key_option

_HELP = f"""Write APP_ID's outputs and results.json.

A signed app's results are given only to its submitter (the key that signed it). Every
answer is checked against its holder's result manifest (each output's SHA-256) before
anything is written.

\b
Exit status (shared with `submit` and `watch`):
{outcome.TABLE}
"""


@click.command(help=_HELP)
@click.argument("app_id")
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where outputs go (default: ./<name>-results/).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Stdout is exactly one JSON object (as submit's)."
)
@sign_key_option
@pass_ctx
def results(
    ctx: Ctx, app_id: str, output: Path | None, as_json: bool, sign_key: Path | None
) -> None:
    setup_logging(ctx.verbose)
    with outcome.json_errors(as_json, app_id):
        reply = asyncio.run(_fetch(ctx, app_id, sign_key))
        check(app_id, reply)
    out = output or Path(f"{reply.name}-results")
    write_results(reply, out)
    code = outcome.exit_status(
        complete=reply.complete, outcome=reply.outcome, results=reply.results
    )
    if as_json:
        doc = outcome.document(
            app=reply.app,
            name=reply.name,
            outcome=reply.outcome if reply.complete else "",
            reason="",
            output=out,
            status=code,
            results=reply.results,
            complete=reply.complete,
        )
        outcome.print_json(doc)
    else:
        click.echo(f"app {reply.app}: {reply.outcome or 'running'}; outputs in {out}/", err=True)
    sys.exit(code)


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
