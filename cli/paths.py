"""`bjgrid paths`: where this user's bjgrid keeps its config, state and logs (nothing made)."""

from __future__ import annotations

import json

import click

from .context import Ctx, pass_ctx


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@pass_ctx
def paths(ctx: Ctx, as_json: bool) -> None:
    """Print the config, state and log directories (BJGRID_HOME=DIR puts all three in DIR)."""
    p = ctx.paths
    rows = {
        "config": str(p.config_dir),
        "state": str(p.state_dir),
        "log": str(p.log_dir),
        "key": str(ctx.key_file),
        "volunteer_config": str(p.config_file),
        "daemon_log": str(p.log_dir / "daemon.log"),
    }
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for k, v in rows.items():
        click.echo(f"{k:<17} {v}")
