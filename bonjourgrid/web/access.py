"""Who may read the web view. Pure.

Every request must bring the view's token (``?token=`` in the URL the daemon prints, or an
``Authorization: Bearer`` header), compared in constant time — on loopback too, since other
users of the same machine reach loopback ports. While the view listens on loopback only, the
``Host`` header must also name a loopback address or ``localhost``: a page on the LAN that
rebinds its own DNS name to 127.0.0.1 (DNS rebinding) is then refused before the token is
even looked at.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from bonjourgrid.web.http import HttpError, Request

TOKEN_BYTES = 16
"""128 random bits: not guessable over a LAN at any request rate."""


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


@dataclass(frozen=True)
class Access:
    token: str
    loopback_only: bool

    def check(self, req: Request) -> None:
        """Return if ``req`` may be answered; HttpError 421 (bad Host) or 401 otherwise."""
        if self.loopback_only and not loopback_host(req.headers.get("host", "")):
            raise HttpError(421, "this view answers only to a loopback Host")
        given = req.query.get("token", "")
        auth = req.headers.get("authorization", "")
        if not given and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if not hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode()):
            raise HttpError(401, "a valid token is needed: `bjgrid status --web` prints the URL")


def loopback_host(host: str) -> bool:
    """``host`` (a Host header: name or address, with an optional port) is loopback."""
    name = host.strip()
    if name.startswith("["):
        end = name.find("]")
        if end < 0:
            return False
        rest, name = name[end + 1 :], name[1:end]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return False
    elif name.count(":") == 1:
        name, _, port = name.partition(":")
        if not port.isdigit():
            return False
    elif ":" in name:
        return False
    if name.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback_address(address: str) -> bool:
    """A bind address that only this machine can reach."""
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def parse_listen(value: str) -> tuple[str, int]:
    """``ADDR``, ``ADDR:PORT``, ``[V6]:PORT`` or ``:PORT`` (loopback) as (address, port);
    port 0 is any free port. ValueError names what is wrong."""
    v = value.strip()
    if not v:
        raise ValueError("empty address")
    port_text = ""
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            raise ValueError(f"{value!r}: unclosed [")
        addr, rest = v[1:end], v[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{value!r}: expected :PORT after ]")
            port_text = rest[1:]
    elif v.count(":") == 1:
        addr, _, port_text = v.partition(":")
        addr = addr or "127.0.0.1"
    else:
        addr = v
    if port_text and (not port_text.isdigit() or not 0 <= int(port_text) <= 65535):
        raise ValueError(f"{value!r}: port must be 0..65535")
    if addr != "localhost":
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise ValueError(f"{value!r}: {addr!r} is not an IP address") from None
    return addr, int(port_text or 0)
