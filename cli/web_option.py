"""``--web-listen`` of `bjgrid join` and `bjgrid serve`: where the daemon serves its live web
view (docs/web.md). Only ``bonjourgrid.web.hook`` (standard library only) is imported here; the
server is loaded when the first browser connects."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, TypeVar

import click

from bonjourgrid.web.hook import (
    DEFAULT_LISTEN,
    OFF,
    is_loopback_address,
    listen_problem,
    parse_listen,
    web_view,
)

if TYPE_CHECKING:
    from bonjourgrid.daemon.node import NodeDaemon

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
        "default, reachable from this machine only; a LAN address (or 0.0.0.0) shares it on "
        "the LAN, behind a token printed here; PORT 0 or none: any free port; "
        f"'{OFF}': no view.",
    )(f)


@contextlib.asynccontextmanager
async def serving(daemon: NodeDaemon, listen: str) -> AsyncIterator[None]:
    """The web view while the block runs; its URL on the terminal (never in the log) when it
    is shared on the LAN."""
    async with web_view(daemon, listen) as url:
        if url is not None and not is_loopback_address(parse_listen(listen)[0]):
            click.echo(f"bjgrid: web view shared on the LAN at {url}", err=True)
            click.echo("bjgrid: anyone with this URL (its token) can watch the grid", err=True)
        yield
