"""The server over real loopback sockets: the page, a snapshot, the event stream."""

from __future__ import annotations

import http.client
import json
import socket
import time

from bonjourgrid.testbed.web_served import FixedSource, machine, served
from bonjourgrid.web.page import CSP, HTML, SCRIPT, STYLE


def get(port: int, target: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", target, headers=headers or {})
    return c.getresponse()


def test_the_page_is_one_offline_document_under_a_strict_policy() -> None:
    with served() as s:
        r = get(s.port, f"/?token={s.token}")
        body = r.read()
        assert r.status == 200 and body == HTML
        csp = r.getheader("Content-Security-Policy")
    assert csp == CSP and "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert b"http://" not in HTML and b"https://" not in HTML  # nothing from the internet
    assert "innerHTML" not in SCRIPT and "insertAdjacentHTML" not in SCRIPT
    assert "document.write" not in SCRIPT and "eval(" not in SCRIPT
    assert "@media (max-width:640px)" in STYLE  # readable on a phone


def test_state_json_and_keep_alive() -> None:
    src = FixedSource(machines=[machine("pc1"), machine("pc2", "worker", app="a1")])
    with served(src) as s:
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        for _ in range(3):  # one connection, several requests
            c.request("GET", f"/state.json?token={s.token}")
            r = c.getresponse()
            doc = json.loads(r.read())
            assert r.status == 200 and r.getheader("Content-Type") == "application/json"
        assert doc["by_state"]["idle"] == 1 and doc["by_state"]["worker"] == 1
        assert [m["host"] for m in doc["machines"]] == ["pc1", "pc2"]


def test_events_are_sent_again_when_the_grid_changes() -> None:
    src = FixedSource(machines=[machine("pc1")])
    with served(src, update_every=0.1) as s:
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        sock.sendall(f"GET /events?token={s.token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        f = sock.makefile("rb")
        assert f.readline().startswith(b"HTTP/1.1 200")
        events = []
        deadline = time.monotonic() + 10
        while len(events) < 2 and time.monotonic() < deadline:
            line = f.readline()
            if line.startswith(b"Content-Type"):
                assert b"text/event-stream" in line
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
                src.machines = [machine("pc1", "worker", app="a1")]
        sock.close()
    assert [e["machines"][0]["state"] for e in events] == ["idle", "worker"]


def test_unknown_paths_are_404_and_the_connection_closes() -> None:
    with served() as s:
        r = get(s.port, f"/etc/passwd?token={s.token}")
        assert r.status == 404 and r.getheader("Connection") == "close"
        assert get(s.port, f"/state.json?token={s.token}&app=../x").status == 400
