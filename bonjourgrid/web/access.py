"""Who may read the web view. Pure.

Every request must bring the view's token (``?token=`` in the URL the daemon prints, or an
``Authorization: Bearer`` header), compared in constant time — on loopback too, since other
users of the same machine reach loopback ports. The ``Host`` header is checked first (DNS
rebinding: a page on the LAN or the internet that rebinds its own name to our address is
refused before the token is even looked at): while the view listens on loopback only, it must
name a loopback address or ``localhost``; shared on the LAN, an IP address or one of this
machine's own names (``names``: its host name and ``NAME.local``).
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from bonjourgrid.web.http import HttpError, Request


@dataclass(frozen=True)
class Access:
    token: str
    loopback_only: bool
    names: frozenset[str] = frozenset()
    """Host names (lower case, no port) a LAN-shared view answers to besides IP addresses."""

    def check(self, req: Request) -> None:
        """Return if ``req`` may be answered; HttpError 421 (bad Host) or 401 otherwise."""
        host = req.headers.get("host", "")
        if self.loopback_only:
            if not loopback_host(host):
                raise HttpError(421, "this view answers only to a loopback Host")
        elif not (loopback_host(host) or lan_host(host, self.names)):
            raise HttpError(421, "this view answers only to its own address or name")
        given = req.query.get("token", "")
        auth = req.headers.get("authorization", "")
        if not given and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if not hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode()):
            raise HttpError(401, "a valid token is needed: `bjgrid status --web` prints the URL")


def split_host(host: str) -> str | None:
    """The name or address of a Host header (port and IPv6 brackets off); None if malformed."""
    name = host.strip()
    if name.startswith("["):
        end = name.find("]")
        if end < 0:
            return None
        rest, name = name[end + 1 :], name[1:end]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return name if ":" in name else None
    if name.count(":") == 1:
        name, _, port = name.partition(":")
        if not port.isdigit():
            return None
    elif ":" in name:
        return None
    return name or None


def lan_host(host: str, names: frozenset[str]) -> bool:
    """``host`` names an IP address (any: the socket was reached on one of ours) or one of
    ``names``."""
    name = split_host(host)
    if name is None:
        return False
    if name.lower().rstrip(".") in names:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def loopback_host(host: str) -> bool:
    """``host`` (a Host header: name or address, with an optional port) is loopback."""
    name = split_host(host)
    if name is None:
        return False
    if name.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
