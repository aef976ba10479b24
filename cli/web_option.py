"""``--web-listen`` of `bjgrid join` and `bjgrid serve`: where the daemon serves its web view
(docs/web.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from bonjourgrid.web.access import is_loopback_address, parse_listen
from bonjourgrid.web.hook import DEFAULT_LISTEN, OFF, listen_problem

F = TypeVar("F", bound=Callable[..., object])


def _check(ctx: click.Context, param: click.Parameter, value: str) -> str:
    problem = listen_problem(value)
    if problem:
        raise click.BadParameter(problem)
    return value


def web_listen_option(f: F) -> F:
    return click.option(
        "--web-listen",
        "web_listen",
        default=DEFAULT_LISTEN,
        show_default=True,
        envvar="BJGRID_WEB_LISTEN",
        metavar="ADDR[:PORT]",
        callback=_check,
        help="Serve the live web view here (`bjgrid status --web` prints its URL). Loopback by "
        "default; a LAN address (or 0.0.0.0) shares it, behind a token printed here; "
        f"'{OFF}' turns it off.",
    )(f)


def announce(url: str | None, listen: str) -> None:
    """On the terminal (never the log): the URL with its token when the view is shared."""
    if url is None:
        return
    address, _ = parse_listen(listen)
    if not is_loopback_address(address):
        click.echo(f"bjgrid: web view shared on the LAN at {url}", err=True)
        click.echo("bjgrid: anyone with this URL (its token) can watch the grid", err=True)
