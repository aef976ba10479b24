"""`bjgrid watch APP_ID`: re-attach to a running app's progress; write its outputs at the end.

For an app submitted with `--detach`, or whose `submit` was closed. It follows the app on
this machine's daemon, or (after a takeover, or from another machine) by its results until
it is complete. Ctrl-C stops watching; the app goes on.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from . import outcome
from .app_follow import Follower
from .context import EXIT_INTERRUPTED, Ctx, pass_ctx, setup_logging
from .daemon_client import daemon_session
from .proofs import sign_key_option

_HELP = f"""Follow APP_ID's progress to its end, then write its outputs and results.json.

Re-attaches to an app submitted with --detach (or whose submit was closed): the same
progress and the same --json object as `bjgrid submit`. Ctrl-C stops watching only.

\\b
Exit status (shared with `submit` and `results`):
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
def watch(ctx: Ctx, app_id: str, output: Path | None, as_json: bool, sign_key: Path | None) -> None:
    setup_logging(ctx.verbose)

    async def go() -> int:
        async with daemon_session(ctx) as session:
            follower = Follower(
                ctx,
                app_id,
                out_dir=output,
                as_json=as_json,
                sign_key=sign_key,
                cancel_on_interrupt=False,
            )
            return await follower.run(session)

    with outcome.json_errors(as_json, app_id):
        try:
            code = asyncio.run(go())
        except KeyboardInterrupt:
            click.echo(f"bjgrid: stopped watching; app {app_id} goes on", err=True)
            code = EXIT_INTERRUPTED
    sys.exit(code)
