"""`bjgrid keygen`: make a new grid key, or (``--user``) the user's signing key."""

from __future__ import annotations

import getpass
from pathlib import Path

import click

from bonjourgrid.app.signing import SigningError, UserKey, user_key_path, write_user_key
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
@click.option(
    "--user",
    "user_key",
    is_flag=True,
    help="Make your signing key (user.key, and user.pub to give to volunteers) instead.",
)
@click.option(
    "--name",
    envvar="BJGRID_USER",
    help="The user name signed apps carry (with --user; default: your login name).",
)
@click.option(
    "--from-code",
    "from_code",
    metavar="CODE",
    help="Receive the grid key from a machine running `bjgrid invite` instead of making one.",
)
@pass_ctx
def keygen(
    ctx: Ctx,
    output: Path | None,
    force: bool,
    user_key: bool,
    name: str | None,
    from_code: str | None = None,
) -> None:
    """Create a new grid key (mode 0600) and print its grid id.

    Copy the same key file to every machine of the lab: machines with another key are a
    different grid and can neither see nor command this one.

    With --user, create your own signing key instead: apps you submit are signed with it,
    and volunteers that list your public key (user.pub) in trusted_users accept them.
    """
    if user_key:
        _user_keygen(ctx, output, force, name)
        return
    if name is not None:
        raise Abort("--name goes with --user")
    path = output or ctx.key_file
    if from_code is not None:
        from .invite import receive_key

        if path.exists() and not force:
            raise Abort(f"{path} exists already (use --force to replace it)")
        key = receive_key(from_code)
    else:
        key = GridKey.generate()
    try:
        write_key(key, path, overwrite=force)
    except KeyError_ as e:
        raise Abort(str(e)) from None
    ctx.out.print(f"grid {key.grid_id}: key written to {path}")


def _user_keygen(ctx: Ctx, output: Path | None, force: bool, name: str | None) -> None:
    path = output or user_key_path(ctx.paths.config_dir)
    try:
        key = UserKey.generate(name or getpass.getuser())
        pub = write_user_key(key, path, overwrite=force)
    except SigningError as e:
        raise Abort(str(e)) from None
    ctx.out.print(f"user {key.user}: signing key written to {path}")
    ctx.out.print(f"fingerprint {key.public.fingerprint}")
    ctx.out.print(f"public key in {pub}; volunteers trust you with this trusted_users entry:")
    ctx.out.print(key.public.dumps().strip())
