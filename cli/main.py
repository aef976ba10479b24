"""The root `bjgrid` command group: it only wires subcommands."""

from __future__ import annotations

import click


@click.group()
def cli() -> None:
    """bonjourgrid: a zero-config desktop grid."""


def main() -> None:
    cli()
