"""Request heads: what is accepted, and what is refused with which status."""

from __future__ import annotations

import pytest

from bonjourgrid.web import http
from bonjourgrid.web.http import HttpError, parse_head


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_browser_get_is_parsed() -> None:
    req = parse_head(head("GET /events?token=abc&app=a1 HTTP/1.1", "Host: 127.0.0.1:8000",
                          "Accept: text/event-stream", "Connection: keep-alive"))  # fmt: skip
    assert req.method == "GET" and req.path == "/events"
    assert req.query == {"token": "abc", "app": "a1"}
    assert req.headers["host"] == "127.0.0.1:8000" and req.keep_alive


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (head("POST / HTTP/1.1", "Host: x"), 405),
        (head("DELETE / HTTP/1.1", "Host: x"), 405),
        (head("GET / HTTP/1.1", "Host: x", "Content-Length: 5"), 413),
        (head("GET / HTTP/1.1", "Host: x", "Transfer-Encoding: chunked"), 413),
        (head("GET / HTTP/2.0", "Host: x"), 400),
        (head("GET http://evil/ HTTP/1.1", "Host: x"), 400),
        (head("GET //evil/ HTTP/1.1", "Host: x"), 400),
        (head("GET / HTTP/1.1"), 400),
        (head("GET /  HTTP/1.1", "Host: x"), 400),
        (head("GET / HTTP/1.1", "Host : x"), 400),
        (head("GET / HTTP/1.1", "Host: x", "X: a\x01b"), 400),
        (head("GET / HTTP/1.1", "Host: x", "no colon"), 400),
        ("GET /é HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 400),
        (head("GET /" + "a" * 3000 + " HTTP/1.1", "Host: x"), 400),
        (head("GET / HTTP/1.1", *[f"X-{i}: y" for i in range(60)]), 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"\r\n\r\n", 400),
    ],
)
def test_bad_heads_are_refused(raw: bytes, status: int) -> None:
    with pytest.raises(HttpError) as e:
        parse_head(raw)
    assert e.value.status == status


def test_every_answer_carries_the_defences() -> None:
    raw = http.response_head(200, "text/html", length=3, csp="default-src 'self'", keep_alive=True)
    text = raw.decode()
    assert "Content-Security-Policy: default-src 'self'" in text
    assert "X-Content-Type-Options: nosniff" in text
    assert "Referrer-Policy: no-referrer" in text
    assert "X-Frame-Options: DENY" in text
    assert "Access-Control" not in text
    assert http.error_response(401, "no", csp="x").startswith(b"HTTP/1.1 401 Unauthorized\r\n")
