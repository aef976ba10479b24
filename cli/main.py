"""The root `bjgrid` command group: it only wires subcommands.

Subcommands are imported lazily (``LazyGroup``): `bjgrid join` runs for months on a
volunteer, and should hold only what the daemon needs, not `submit`'s progress display or
`demo`'s test bed. `bjgrid --help` and shell completion import them all.
"""

from __future__ import annotations

import importlib

import click

from bonjourgrid import __version__
from bonjourgrid.config import Config

from .context import EXIT_BAD_INPUT, Abort, Ctx

COMMANDS: dict[str, str] = {
    "keygen": "keygen",
    "invite": "invite",
    "join": "join",
    "pause": "pause",
    "resume": "pause",
    "status": "status",
    "submit": "submit",
    "watch": "watch",
    "results": "results",
    "apps": "apps",
    "cancel": "apps",
    "demo": "demo",
    "schema": "schema",
    "paths": "paths",
    "serve": "serve",
}
"""Command name -> the module of this package that defines it (as an attribute of that name)."""


class LazyGroup(click.Group):
    """A group whose subcommands are imported when first used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command = getattr(importlib.import_module(f"{__package__}.{module}"), cmd_name)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def main() -> None:
    cli()
