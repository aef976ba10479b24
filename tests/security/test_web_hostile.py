"""The web view's HTTP server facing attacker requests (issue 17): a LAN host, a page in the
user's own browser from another origin (CSRF, DNS rebinding), or a grid-key holder whose
host name, app names, task ids and stderr reach the page. Real sockets on loopback, the real
server; the escaping test drives a real headless Chromium. Each test asserts the safe outcome
and that the server still serves an honest client afterwards (docs/security.md's table)."""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
from collections.abc import Iterator

import pytest

from bonjourgrid.testbed.browser import Chromium, texts
from bonjourgrid.testbed.web_served import FixedSource, Served, machine, served
from bonjourgrid.web import http as http_head
from bonjourgrid.web.server import Limits

MARGIN = 10.0
"""Generous slack over a timeout for a loaded box (no timed assertion is tight)."""


def raw(port: int, data: bytes, *, source: str = "127.0.0.1", timeout: float = 15.0) -> bytes:
    """Send ``data``, read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout, (source, 0)) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)  # refused mid-send: what was answered is still readable
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def honest(s: Served, source: str = "127.0.0.1") -> int:
    """An ordinary page load still works (the server survived)."""
    get = (
        f"GET /state.json?token={s.token} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    return status(raw(s.port, get.encode(), source=source))


@pytest.fixture
def view() -> Iterator[Served]:
    with served(FixedSource(machines=[machine("pc1")])) as s:
        yield s


def test_an_oversized_request_line_or_head_is_refused_431(view: Served) -> None:
    line = f"GET /?token={view.token}&x={'A' * 100_000} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    assert status(raw(view.port, line.encode())) == 431
    huge = f"GET /?token={view.token} HTTP/1.1\r\nHost: 127.0.0.1\r\nX: {'B' * 9000}\r\n\r\n"
    assert status(raw(view.port, huge.encode())) == 431
    many = "".join(f"X-{i}: y\r\n" for i in range(60))
    req = f"GET /?token={view.token} HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}\r\n"
    assert status(raw(view.port, req.encode())) == 431
    assert honest(view) == 200


def test_slowloris_does_not_block_others_and_is_cut_off() -> None:
    """Clients that never finish their heads: others are served meanwhile; each slow one is
    answered 408 and closed after head_timeout, even while it trickles bytes; one address
    holds at most max_per_peer connections (a second loopback address stands for another
    LAN host)."""
    limits = Limits(head_timeout=1.0, max_per_peer=8)
    with served(limits=limits) as s:
        slow = []
        for _ in range(limits.max_per_peer):
            c = socket.create_connection(("127.0.0.1", s.port), 15, ("127.0.0.9", 0))
            c.sendall(b"GET / HTTP/1.1\r\nHost: 127")
            slow.append(c)
        extra = raw(s.port, b"GET / HTTP/1.1\r\n", source="127.0.0.9")
        assert status(extra) == 503  # this address has all its slots
        t0 = time.monotonic()
        assert honest(s) == 200  # another client is not blocked by them
        assert time.monotonic() - t0 < limits.head_timeout + MARGIN
        for c in slow[:2]:
            c.sendall(b".")  # trickling does not restart the clock
        answers = []
        for c in slow:
            c.settimeout(limits.head_timeout + MARGIN)
            data = b""
            while chunk := c.recv(4096):
                data += chunk
            answers.append(status(data))
            c.close()
        assert answers == [408] * len(slow)
        assert time.monotonic() - t0 < limits.head_timeout + MARGIN
        assert honest(s, "127.0.0.9") == 200  # its slots are free again


@pytest.mark.parametrize(
    "target",
    ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd",
     "//etc/passwd", "/state.json/../../../etc/passwd", "http://127.0.0.1/etc/passwd",
     "/%00", "*", "/events/..%5c..%5cetc%5cpasswd"],
)  # fmt: skip
def test_path_traversal_serves_no_file(view: Served, target: str) -> None:
    sep = "&" if "?" in target else "?"
    req = f"GET {target}{sep}token={view.token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    answer = raw(view.port, req.encode())
    assert status(answer) in (400, 404) and b"root:" not in answer
    assert honest(view) == 200


@pytest.mark.parametrize("token", [None, "", "wrong", "TOKEN-1", "%00", "A" * 1900, "A" * 4000])
def test_a_shared_view_needs_its_token(token: str | None) -> None:
    """As with --web-listen on a LAN address: no token, a wrong one or a near miss is 401,
    for every path; the right one in the query or a Bearer header opens it."""
    with served(loopback_only=False) as s:
        near = s.token[:-1] + ("A" if s.token[-1] != "A" else "B")
        given = near if token == "TOKEN-1" else token
        for path in ("/", "/state.json", "/events"):
            q = "" if given is None else f"?token={given}"
            req = f"GET {path}{q} HTTP/1.1\r\nHost: 10.0.0.5:8470\r\n\r\n"
            answer = raw(s.port, req.encode())
            too_long = len(req.split(" ")[1]) > http_head.MAX_TARGET  # refused before the token
            assert status(answer) == (400 if too_long else 401) and b"pc1" not in answer
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        c.request("GET", "/state.json", headers={"Authorization": f"Bearer {s.token}"})
        assert c.getresponse().status == 200


@pytest.mark.parametrize(
    ("loopback_only", "host", "want"),
    [(True, "attacker.example:8000", 421), (True, "10.0.0.5", 421), (True, "", 421),
     (True, "127.0.0.1.attacker.example", 421), (True, "localhost:1", 200),
     (False, "attacker.example", 421), (False, "lab-pc.local.attacker.example", 421),
     (False, "lab-pc.local:8470", 200), (False, "10.0.0.5:8470", 200)],
)  # fmt: skip
def test_dns_rebinding_a_host_that_is_not_ours_is_refused(
    loopback_only: bool, host: str, want: int
) -> None:
    """A page that rebinds its own name to our address sends its own name as Host: refused
    (421) even with the right token; our own names and addresses are answered."""
    with served(loopback_only=loopback_only) as s:
        req = (
            f"GET /state.json?token={s.token} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        answer = raw(s.port, req.encode())
        assert status(answer) == want
        if want != 200:
            assert b"pc1" not in answer


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_only_get_and_head_are_served_and_no_cors(view: Served, method: str) -> None:
    """Nothing in the view changes state, and no other method is answered (CSRF has
    nothing to aim at); no answer carries a CORS header, so no other origin reads one."""
    body = "x=1"
    req = (
        f"{method} /state.json?token={view.token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Origin: http://attacker.example\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    )
    answer = raw(view.port, req.encode())
    assert status(answer) == 405 and b"\r\nAllow: GET, HEAD\r\n" in answer
    ok = raw(
        view.port,
        f"GET /?token={view.token} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://a.example\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    assert status(ok) == 200
    for a in (answer, ok):
        assert b"access-control-allow" not in a.lower()
    assert b"X-Frame-Options: DENY" in ok and b"frame-ancestors 'none'" in ok


def test_event_streams_are_capped_and_a_closed_page_frees_its_slot() -> None:
    limits = Limits(max_streams=4, max_per_peer=64, update_every=0.1)
    with served(limits=limits) as s:
        req = f"GET /events?token={s.token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        streams = []
        for _ in range(limits.max_streams):
            c = socket.create_connection(("127.0.0.1", s.port), 15)
            c.sendall(req)
            f = c.makefile("rb")
            assert f.readline().startswith(b"HTTP/1.1 200")
            streams.append((c, f))
        many = [status(raw(s.port, req)) for _ in range(5)]
        assert many == [503] * 5
        assert honest(s) == 200  # the page and snapshots are still served
        c, f = streams.pop()
        f.close()
        c.close()
        deadline = time.monotonic() + MARGIN
        while True:  # the slot is free once the server saw the EOF
            c = socket.create_connection(("127.0.0.1", s.port), 15)
            c.sendall(req)
            line = c.makefile("rb").readline()
            c.close()
            if line.startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert line.startswith(b"HTTP/1.1 200")
        for c, f in streams:
            f.close()
            c.close()


PAYLOADS = [
    "<script>window.pwned=1</script>",
    '<img src=x onerror="window.pwned=2">',
    '"><svg onload="window.pwned=3">',
    "</pre><iframe src=javascript:window.pwned=4>",
]


@pytest.mark.chromium
def test_strings_from_the_lan_are_shown_as_text_in_a_real_browser() -> None:
    """Host names, app ids and names, owners, task ids, workers, reasons and a stderr tail
    crafted as markup reach the page as text: nothing runs, no element is made from them,
    and a stderr that tries to break the event stream (``\\n\\ndata:``) is one value."""
    p = PAYLOADS
    stderr = ('boom\n\ndata: {"machines":[]}\n\n' + p[3]).encode()
    src = FixedSource(
        machines=[machine(p[0]), machine("pc2", "worker", app=p[1])],
        apps=[
            {
                "app": p[2],
                "name": p[0],
                "user": p[1],
                "coordinator": p[3],
                "term": 1,
                "state": "running",
                "waiting_reason": p[0],
            },
            {
                "app": "a1",
                "name": p[1],
                "user": "ann",
                "coordinator": "pc0",
                "term": 2,
                "state": "coordinating",
                "counts": {"done": 1, "failed": 1},
            },
        ],
        docs={
            "a1": (
                {
                    "app": "a1",
                    "name": p[2],
                    "tasks": [
                        {
                            "id": p[0],
                            "state": "failed",
                            "attempts": 2,
                            "worker": p[1],
                            "exit_code": 1,
                            "reason": p[2],
                        },
                        {"id": "t2", "state": "done", "attempts": 1, "worker": p[3]},
                    ],
                },
                {p[0]: stderr},
            )
        },
    )
    with served(src) as s, Chromium() as b:
        b.navigate(s.url() + "#app=a1")
        b.wait_for("document.querySelectorAll('#tasks tbody tr').length === 2", timeout=30)
        assert b.evaluate("window.pwned === undefined")
        assert b.evaluate("document.querySelectorAll('img, svg, iframe').length") == 0
        assert b.evaluate("document.scripts.length") == 1
        assert p[0] in texts(b, "#machines td.host")
        assert {p[2], "a1"} == set(texts(b, "#apps td.app"))
        assert p[0] in texts(b, "#tasks td.task")
        assert texts(b, "#tasks pre.stderr") == [stderr.decode()]


@pytest.mark.parametrize(
    "head",
    [b"GET /\r\n\r\n", b"GET  / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
     b"GET / HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n",
     b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nNoColon\r\n\r\n",
     b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n Folded: x\r\n\r\n",
     b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: a\x01b\r\n\r\n",
     "GET /\u00e9 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(),
     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
     b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
)  # fmt: skip
def test_a_malformed_request_is_refused_400_and_closed(view: Served, head: bytes) -> None:
    """Broken request lines, a missing Host, folded or nameless headers, control bytes,
    non-ASCII, a TLS hello, a smuggled body: a 4xx naming no data, then the connection is
    closed (raw() returns only once the server closes it)."""
    tok = f"token={view.token}".encode()
    head = head.replace(b" / ", b" /?" + tok + b" ", 1)
    answer = raw(view.port, head)
    assert status(answer) in (400, 413) and b"pc1" not in answer
    assert honest(view) == 200


def test_an_idle_kept_alive_connection_is_closed() -> None:
    """A client that got its answer and then holds the connection open saying nothing is
    closed after idle_timeout (it does not keep a slot for ever)."""
    limits = Limits(idle_timeout=1.0)
    with served(FixedSource(machines=[machine("pc1")]), limits=limits) as s:
        c = socket.create_connection(("127.0.0.1", s.port), 15)
        c.sendall(f"GET /state.json?token={s.token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        c.settimeout(limits.idle_timeout + MARGIN)
        t0 = time.monotonic()
        data = b""
        while chunk := c.recv(65536):
            data += chunk
        c.close()
        assert data.startswith(b"HTTP/1.1 200") and b"pc1" in data
        assert time.monotonic() - t0 < limits.idle_timeout + MARGIN  # closed, not timed out
