"""`bjgrid keygen`: make a new grid key."""

from __future__ import annotations

from pathlib import Path

import click

from bonjourgrid.gridkey import GridKey, KeyError_, write_key

from .context import Abort, Ctx, pass_ctx


@click.command()
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the key (default: the user config dir, or --key-file).",
)
@click.option("--force", is_flag=True, help="Replace an existing key file.")
@pass_ctx
def keygen(ctx: Ctx, output: Path | None, force: bool) -> None:
    """Create a new grid key (mode 0600) and print its grid id.

    Copy the same key file to every machine of the lab: machines with another key are a
    different grid and can neither see nor command this one.
    """
    path = output or ctx.key_file
    key = GridKey.generate()
    try:
        write_key(key, path, overwrite=force)
    except KeyError_ as e:
        raise Abort(str(e)) from None
    ctx.out.print(f"grid {key.grid_id}: key written to {path}")
