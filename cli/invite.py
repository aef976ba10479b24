"""`bjgrid invite`: hand this machine's grid key to one new machine that proves it knows a
short code read aloud (SPAKE2 over the LAN; docs/security.md, "Pairing"). Also the joiner's
half, ``receive_key``, which `join --code` and `keygen --from-code` share."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import click

from bonjourgrid.discovery import DiscoveryError
from bonjourgrid.gridkey import GridKey, KeyError_, write_key
from bonjourgrid.pairing.code import Code, CodeError, parse_code
from bonjourgrid.pairing.session import Invitation, PairingError

from .context import EXIT_BAD_INPUT, EXIT_GRID_FAILED, EXIT_NOT_FOUND, Abort, Ctx, pass_ctx

DEFAULT_EXPIRES = 300.0
DEFAULT_GUESSES = 3
FIND_TIMEOUT = 10.0


@click.command()
@click.option(
    "--expires",
    type=click.FloatRange(min=1.0),
    default=DEFAULT_EXPIRES,
    show_default=True,
    metavar="SECONDS",
    help="The code works this long.",
)
@click.option(
    "--max-wrong",
    type=click.IntRange(min=1, max=10),
    default=DEFAULT_GUESSES,
    show_default=True,
    help="Close the invitation after this many wrong codes.",
)
@click.option(
    "--interface",
    "-i",
    "interfaces",
    multiple=True,
    envvar="BJGRID_INTERFACE",
    help="Interface name or IPv4 address to advertise on (repeatable).",
)
@click.option("--no-qr", is_flag=True, help="Do not draw the code as a QR code.")
@pass_ctx
def invite(
    ctx: Ctx, expires: float, max_wrong: int, interfaces: tuple[str, ...], no_qr: bool
) -> None:
    """Invite one machine into this grid with a short code, and wait for it.

    Prints a code like 7-guitar-otter-maple; on the new machine run
    `bjgrid join --code 7-guitar-otter-maple` (or `bjgrid keygen --from-code ...` for a
    machine that only submits). The code works once, for --expires seconds; after
    --max-wrong wrong codes the invitation closes. Exit 0 once a machine has the key, 3 if
    the invitation expired or closed with none.
    """
    key = ctx.key()
    code = Code.generate()
    invitation = Invitation(code, expires_at=time.monotonic() + expires, max_wrong=max_wrong)
    click.echo(f"pairing code: {code}", err=False)
    click.echo(f"on the new machine: bjgrid join --code {code}")
    if not no_qr and sys.stdout.isatty():
        _print_qr(str(code))
    click.echo(f"waiting (the code works once, for {expires:g} s)...")
    sys.stdout.flush()
    try:
        state = asyncio.run(_serve(invitation, key, interfaces))
    except DiscoveryError as e:
        raise Abort(str(e), EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:
        raise Abort("invitation cancelled", 130) from None
    if state != "used":
        raise Abort(f"invitation {state}: no machine received the key", EXIT_GRID_FAILED)
    click.echo("paired: the new machine has the grid key")


def _print_qr(text: str) -> None:
    try:
        import segno
    except ImportError:  # optional: the code in words is enough
        return
    segno.make(text, error="m").terminal(compact=True)


async def _serve(invitation: Invitation, key: GridKey, interfaces: tuple[str, ...]) -> str:
    from bonjourgrid.discovery.invitation import InvitationAdvert
    from bonjourgrid.pairing.net import InviteServer

    def event(peer: str, outcome: str) -> None:
        left = invitation.max_wrong - invitation.wrong
        note = f" ({left} wrong codes left)" if outcome == "wrong code" else ""
        click.echo(f"{peer}: {outcome}{note}")
        sys.stdout.flush()

    server = InviteServer(invitation, key.secret, on_event=event)
    await server.start("0.0.0.0")  # one family: with None each family gets its own port
    advert = InvitationAdvert(invitation.code.channel, server.port, interfaces)
    try:
        await advert.start()
        return await server.wait()
    finally:
        await advert.close()
        await server.close()


def receive_key(
    code_text: str, *, interfaces: tuple[str, ...] = (), timeout: float = FIND_TIMEOUT
) -> GridKey:
    """Finds the invitation of ``code_text`` on the LAN and runs the exchange: the grid key,
    or Abort (2: malformed or wrong code; 4: no open invitation for it)."""
    try:
        code = parse_code(code_text)
    except CodeError as e:
        raise Abort(f"--{e}", EXIT_BAD_INPUT) from None
    try:
        return GridKey(asyncio.run(_fetch(code, interfaces, timeout)))
    except DiscoveryError as e:
        raise Abort(str(e), EXIT_BAD_INPUT) from None


async def _fetch(code: Code, interfaces: tuple[str, ...], timeout: float) -> bytes:
    from bonjourgrid.discovery.invitation import find_invitations
    from bonjourgrid.pairing.net import join_at

    places = await find_invitations(code.channel, timeout=timeout, interfaces=interfaces)
    if not places:
        raise Abort(
            f"no open invitation {code.channel} on this LAN: it was used or expired, or the "
            "inviting machine is not reachable (run `bjgrid invite` there again)",
            EXIT_NOT_FOUND,
        )
    last = ""
    for host, port in places:
        try:
            return await join_at(host, port, code)
        except PairingError as e:
            if e.wrong_code:
                raise Abort(
                    "wrong code: the inviting machine refused it (no key was received; check "
                    "the code, or ask for a new one)",
                    EXIT_BAD_INPUT,
                ) from None
            last = str(e)
    if last.startswith("invitation "):
        raise Abort(f"{last}: ask for a new code", EXIT_NOT_FOUND)
    raise Abort(f"pairing failed: {last}", EXIT_NOT_FOUND)


def store_key(key: GridKey, path: Path, *, overwrite: bool = False) -> None:
    """Writes a paired key (mode 0600) where the other commands look for it."""
    try:
        write_key(key, path, overwrite=overwrite)
    except KeyError_ as e:
        raise Abort(str(e)) from None
