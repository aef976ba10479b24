"""The root `bjgrid` command group: it only wires subcommands."""

from __future__ import annotations

import click

from bonjourgrid import __version__
from bonjourgrid.config import Config

from .apps import apps, cancel
from .context import EXIT_BAD_INPUT, Abort, Ctx
from .demo import demo
from .join import join
from .keygen import keygen
from .paths import paths
from .results import results
from .schema import schema
from .serve import serve
from .status import status
from .submit import submit
from .watch import watch


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bjgrid")
@click.option(
    "--key-file",
    envvar="BJGRID_KEY_FILE",
    type=click.Path(dir_okay=False),
    help="The grid key (default: $BJGRID_KEY_FILE, then the user config dir).",
)
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
@click.pass_context
def cli(click_ctx: click.Context, key_file: str | None, verbose: int) -> None:
    """bonjourgrid: a zero-config desktop grid.

    Machines on a LAN find each other over mDNS/DNS-SD. `bjgrid join` volunteers this
    desktop; `bjgrid submit app.json` makes this machine the coordinator of a computing
    element built for one application. Start with `bjgrid keygen` (one key per lab) or
    `bjgrid demo`.
    """
    try:  # a bad BJGRID_PROFILE / BJGRID_TIMING is bad input, said in one line
        config = Config.from_env()
    except ValueError as e:
        raise Abort(str(e), EXIT_BAD_INPUT) from None
    click_ctx.obj = Ctx(key_file_option=key_file, verbose=verbose, config=config)


for command in (
    keygen,
    join,
    status,
    submit,
    watch,
    results,
    apps,
    cancel,
    demo,
    schema,
    paths,
    serve,
):
    cli.add_command(command)


def main() -> None:
    cli()
