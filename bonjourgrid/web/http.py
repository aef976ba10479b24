"""HTTP/1.1 request heads in, bounded and checked; response bytes out. Pure: no sockets.

Every request is attacker input (the view may be shared on the LAN): the head is read up to
``MAX_HEAD`` bytes only, with at most ``MAX_HEADERS`` header lines; a body is never read
(only GET and HEAD are served, and one with a body is refused); the target must be an origin-form
path. Anything else is an :class:`HttpError` with the status to answer, and the connection is
closed after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

MAX_HEAD = 8192
"""Bytes of request line plus headers (nginx's default large header buffer is 8 KiB)."""
MAX_HEADERS = 40
"""Header lines; a browser sends about fifteen."""
MAX_TARGET = 2048
"""Characters of the request target."""
HEAD_TIMEOUT = 10.0
"""Seconds a client has to send the whole head (slowloris: a trickle is cut off)."""
IDLE_TIMEOUT = 15.0
"""Seconds a kept-alive connection may wait for its next request."""

_METHODS = frozenset({"GET", "HEAD"})
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class HttpError(Exception):
    """A request refused with ``status``; ``message`` is plain text for the body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    """Percent-decoded path, e.g. ``/app/ab12``."""
    query: dict[str, str]
    """First value of each query parameter."""
    headers: dict[str, str] = field(default_factory=dict)
    """Lower-case names; a repeated header keeps its first value."""

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


def parse_head(head: bytes) -> Request:
    """The request whose head (request line and headers, ending with the blank line or
    not) is ``head``; HttpError when it is malformed, too big, or not something we serve."""
    if len(head) > MAX_HEAD:
        raise HttpError(431, "request head too large")
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "request head is not ASCII") from None
    lines = text.split("\r\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise HttpError(400, "empty request")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(400, "unsupported HTTP version")
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(431, "too many header lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or not _token(name):
            raise HttpError(400, "malformed header line")
        if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
            raise HttpError(400, "control character in a header")
        headers.setdefault(name.lower(), value.strip(" \t"))
    if method not in _METHODS:
        raise HttpError(405, "only GET and HEAD are served: the view changes nothing")
    if "content-length" in headers and headers["content-length"] != "0":
        raise HttpError(413, "a request body is not accepted")
    if "transfer-encoding" in headers:
        raise HttpError(413, "a request body is not accepted")
    if len(target) > MAX_TARGET or not target.startswith("/") or target.startswith("//"):
        raise HttpError(400, "bad request target")
    if version == "HTTP/1.1" and "host" not in headers:
        raise HttpError(400, "no Host header")
    split = urlsplit(target)
    query = {k: v[0] for k, v in parse_qs(split.query, max_num_fields=16).items()}
    return Request(method, unquote(split.path), query, headers)


def _token(name: str) -> bool:
    return all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in name)


def security_headers(csp: str) -> list[tuple[str, str]]:
    """Headers every answer carries: no sniffing, no framing, no referrer (the token is in
    the URL), no caching, and the page's Content-Security-Policy. No CORS header is ever
    sent, so other origins cannot read an answer."""
    return [
        ("Content-Security-Policy", csp),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
        ("Cross-Origin-Resource-Policy", "same-origin"),
    ]


def response_head(
    status: int,
    content_type: str,
    *,
    length: int | None,
    csp: str,
    keep_alive: bool,
    extra: list[tuple[str, str]] | None = None,
) -> bytes:
    """Status line and headers; ``length`` None for a stream (no Content-Length, closed at
    its end)."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
    headers = [("Content-Type", content_type), *security_headers(csp), *(extra or [])]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    headers.append(("Connection", "keep-alive" if keep_alive and length is not None else "close"))
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def error_response(status: int, message: str, *, csp: str) -> bytes:
    """A whole plain-text answer that closes the connection."""
    body = (message + "\n").encode("utf-8", "replace")
    extra = {401: [("WWW-Authenticate", 'Bearer realm="bjgrid"')], 405: [("Allow", "GET, HEAD")]}
    more = extra.get(status, [])
    head = response_head(
        status, "text/plain; charset=utf-8", length=len(body), csp=csp, keep_alive=False,
        extra=more,
    )  # fmt: skip
    return head + body
