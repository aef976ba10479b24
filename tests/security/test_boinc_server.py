"""A host without the key against a coordinator's BOINC project server (issue 12, item 6).

The project is served as the coordinator serves it (``Project`` in its own thread, on
loopback); the attacker speaks raw HTTP from other loopback addresses (127.0.0.2, ...), as
any LAN host can. Each test asserts the safe outcome: nothing written or committed, the
legitimate client's result intact, the server still answering. The volunteer's side: a
worker never attaches its client to a project its coordinator does not serve.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bonjourgrid.ce_backends.boinc.http_server import HttpLimits
from bonjourgrid.ce_backends.boinc.issuer import IssuerConfig
from bonjourgrid.ce_backends.boinc.project import Finished, Project, ProjectConfig, logs_archive
from bonjourgrid.ce_backends.boinc.signing import CodeSignKey
from bonjourgrid.ce_backends.boinc.worker import BoincWorker
from bonjourgrid.ce_backends.boinc.wrapper_program import OUT_MAGIC, frame
from bonjourgrid.ce_backends.registry import WorkerContext
from bonjourgrid.control.messages import BoincAttach, BoincAttached

KEY = CodeSignKey.generate()
LIMITS = HttpLimits(
    header_timeout=1.5,
    body_timeout=1.5,
    min_rate=1 << 20,
    max_connections=8,
    max_per_address=4,
)
"""Short deadlines and few connections, so the attacks hit the bounds in a second."""
MAX_NBYTES = 4096
LEGIT = "127.0.0.1"
ATTACKER = "127.0.0.2"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Project, list[Finished]]]:
    done: list[Finished] = []
    config = ProjectConfig(
        next_rpc_delay=3, issuer=IssuerConfig(max_output_bytes=MAX_NBYTES), http=LIMITS
    )
    p = Project(app_id="a1", key=KEY, bundle=b"bundle", root=tmp_path / "project",
                on_result=done.append, config=config)  # fmt: skip
    with p:
        yield p, done


def call(p: Project, method: str, path: str, body: bytes = b"", source: str = LEGIT) -> bytes:
    conn = http.client.HTTPConnection(p.address, p.port, timeout=5, source_address=(source, 0))
    try:
        conn.request(method, p.base_path + path, body=body)
        resp = conn.getresponse()
        return resp.read()
    finally:
        conn.close()


def sched(auth: str, host: str, report: str = "", other: str = "", hostid: int = 0) -> bytes:
    return f"""<scheduler_request><authenticator>{auth}</authenticator><hostid>{hostid}</hostid>
<cpu_req_secs>1</cpu_req_secs><platform_name>x86_64-pc-linux-gnu</platform_name>
<host_info><host_cpid>{host}</host_cpid><domain_name>{host}</domain_name><p_ncpus>1</p_ncpus>
<m_nbytes>1e9</m_nbytes></host_info>{report}<other_results>{other}</other_results>
</scheduler_request>""".encode()


def issued(reply: bytes) -> tuple[str, str, str]:
    """(result name, output file name, its xml_signature) of the one result in a reply."""
    m = re.search(
        rb"<name>(\S+_out)</name>\s*<url>[^<]*file_upload_handler</url>.*?"
        rb"<xml_signature>\s*(\S+)\s*</xml_signature>",
        reply,
        re.S,
    )
    assert m, reply
    out = m.group(1).decode()
    return out.removesuffix("_out"), out, m.group(2).decode()


def upload_body(name: str, data: bytes, signature: str = "", nbytes: int | None = None) -> bytes:
    head = f"""<data_server_request>
<core_client_major_version>7</core_client_major_version>
<file_upload>
<file_info>
<name>{name}</name>
<xml_signature>
{signature}
</xml_signature>
<max_nbytes>{MAX_NBYTES}</max_nbytes>
</file_info>
<nbytes>{len(data) if nbytes is None else nbytes}</nbytes>
<md5_cksum>{hashlib.md5(data).hexdigest()}</md5_cksum>
<offset>0</offset>
<data>
"""
    return head.encode() + data


def uploads_on_disk(p: Project) -> list[str]:
    return sorted(f.name for f in (p.root / "upload").iterdir())


def wrapper_output(stdout: bytes) -> bytes:
    """An uploaded ``bjg_out`` as the wrapper writes it."""
    return frame(OUT_MAGIC, {"exit_code": 0, "seconds": 0.1, "error": ""},
                 logs_archive(stdout, b""))  # fmt: skip


def until(cond: Callable[[], object], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.02)


def report(result: str) -> str:
    return f"<result><name>{result}</name><exit_status>0</exit_status><state>5</state></result>"


def test_a_scheduler_request_without_the_account_s_authenticator_gets_no_work(
    served: tuple[Project, list[Finished]], caplog: pytest.LogCaptureFixture
) -> None:
    p, _ = served
    auth = p.add_account("n1")
    p.submit(task="t", attempt=1, command="true")
    caplog.set_level(logging.WARNING, logger="bonjourgrid.ce_backends.boinc.project")
    for wrong in ["", "0" * 32, auth[:-1] + ("0" if auth[-1] != "0" else "1"), auth.upper()]:
        for _ in range(10):
            reply = call(p, "POST", "cgi", sched(wrong, "evil"), source=ATTACKER)
            assert b"<result>" not in reply and b"unknown account" in reply
            assert b"<scheduler_reply>" in reply  # an answer the client understands
    assert p.waiting == 1 and p.rpcs == 0
    refusals = [r for r in caplog.records if "unknown account" in r.getMessage()]
    assert 1 <= len(refusals) <= 11  # 40 refusals, rate-limited to a burst of 10 (+ summary)
    assert b"<result>" in call(p, "POST", "cgi", sched(auth, "h1"))


def test_a_dtd_in_a_scheduler_request_is_refused(served: tuple[Project, list[Finished]]) -> None:
    p, _ = served
    auth = p.add_account("n1")
    bomb = (
        b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        + sched(auth, "h1").replace(b"<domain_name>h1", b"<domain_name>&b;")
    )
    conn = http.client.HTTPConnection(p.address, p.port, timeout=5)
    conn.request("POST", p.base_path + "cgi", body=bomb)
    assert conn.getresponse().status == 400
    conn.close()


def test_forged_uploads_write_nothing_and_the_legitimate_result_stays_correct(
    served: tuple[Project, list[Finished]],
) -> None:
    p, done = served
    a, b = p.add_account("n1"), p.add_account("n2")
    p.submit(task="t", attempt=1, command="true")
    p.submit(task="u", attempt=1, command="true")
    result, name, sig = issued(call(p, "POST", "cgi", sched(a, "h1")))
    b_result, b_name, b_sig = issued(call(p, "POST", "cgi", sched(b, "h2")))
    evil = wrapper_output(b"pwned")
    forged = [
        upload_body("bjg1_t_1_out", evil),  # the name the server used to issue
        upload_body(re.sub(r"-[0-9a-f]{16}_", "-0000000000000000_", name), evil, sig),
        upload_body(name, evil),  # the issued name, no signature
        upload_body(name, evil, "0" * 64),
        upload_body(name, evil, b_sig),  # another client's signature
        upload_body(name, evil, sig.upper()),
        upload_body("../../etc/passwd", evil, sig),
    ]
    for body in forged:
        assert b"<status>-1</status>" in call(p, "POST", "file_upload_handler", body, ATTACKER)
    query = "<data_server_request><get_file_size>bjg1_t_1_out</get_file_size></data_server_request>"
    assert b"<status>-1</status>" in call(p, "POST", "file_upload_handler", query.encode())
    assert uploads_on_disk(p) == []
    # The real client's upload, then a replay of its exact request with other bytes: the
    # committed file is not overwritten.
    good = wrapper_output(b"right")
    assert b"<status>0</status>" in call(
        p, "POST", "file_upload_handler", upload_body(name, good, sig)
    )
    replay = upload_body(name, evil, sig)
    assert b"<status>0</status>" in call(p, "POST", "file_upload_handler", replay, ATTACKER)
    assert (p.root / "upload" / name).read_bytes() == good
    # Another host (with an account of its own) reports this result: it does not count.
    b_holds = f"<other_result><name>{b_result}</name></other_result>"
    call(p, "POST", "cgi", sched(b, "h2", report(result), b_holds, hostid=2))
    time.sleep(0.2)
    assert done == [] and ("t", 1) in p.attempts()
    call(p, "POST", "cgi", sched(a, "h1", report(result), hostid=1))
    until(lambda: done)  # delivered once the reply is sent
    (f,) = done
    assert (f.task, f.exit_code, f.stdout, f.host) == ("t", 0, b"right", "n1")
    assert uploads_on_disk(p) == []  # read and removed; b's result untouched
    assert b_name.startswith("bjg2-")


def test_a_host_id_of_another_account_does_not_take_its_results(
    served: tuple[Project, list[Finished]],
) -> None:
    p, done = served
    a, b = p.add_account("n1"), p.add_account("n2")
    p.submit(task="t", attempt=1, command="true")
    assert b"<hostid>1</hostid>" in call(p, "POST", "cgi", sched(a, "h1"))
    # b claims host 1 and lists no results: a's result must not be "lost" by that.
    reply = call(p, "POST", "cgi", sched(b, "h1", hostid=1))
    assert b"<hostid>2</hostid>" in reply
    time.sleep(0.2)
    assert done == [] and p.attempts() == [("t", 1)]


def _send_head(sock: socket.socket, p: Project, path: str, length: int, extra: str = "") -> None:
    head = (
        f"POST {p.base_path}{path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n"
    )
    sock.sendall(head.encode())


def _connect(p: Project, source: str = ATTACKER) -> socket.socket:
    return socket.create_connection((p.address, p.port), timeout=5, source_address=(source, 0))


def _status(sock: socket.socket) -> int:
    first = sock.recv(4096).split(b"\r\n", 1)[0]
    return int(first.split()[1])


@pytest.mark.parametrize(
    ("path", "length"),
    [("cgi", 10 << 30), ("file_upload_handler", MAX_NBYTES + (64 << 10)), ("nowhere", 1 << 20)],
)
def test_an_oversized_body_is_refused_unread_and_the_server_stays_responsive(
    served: tuple[Project, list[Finished]], path: str, length: int
) -> None:
    p, _ = served
    with _connect(p) as s:
        _send_head(s, p, path, length)
        # Answered from the headers alone: the body was never waited for.
        assert _status(s) in (404, 413)
        sent = 0
        with pytest.raises(OSError):  # the server closed: the rest goes nowhere
            chunk = b"x" * (1 << 20)
            while sent < (256 << 20):
                s.sendall(chunk)
                sent += len(chunk)
                if not s.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) and sent > (8 << 20):
                    raise ConnectionResetError("peer closed")
        assert sent < (64 << 20)
    with _connect(p) as s:  # "Expect: 100-continue": refused before the client sends
        _send_head(s, p, path, length, "Expect: 100-continue\r\n")
        assert _status(s) in (404, 413)
    assert b"<scheduler_reply>" in call(p, "POST", "cgi", sched(p.authenticator, "h1"))
    assert uploads_on_disk(p) == []


def test_a_declared_size_over_max_nbytes_is_refused(served: tuple[Project, list[Finished]]) -> None:
    p, _ = served
    auth = p.add_account("n1")
    p.submit(task="t", attempt=1, command="true")
    _, name, sig = issued(call(p, "POST", "cgi", sched(auth, "h1")))
    big = upload_body(name, b"z" * 100, sig, nbytes=MAX_NBYTES + 1)
    assert b"<status>-1</status>" in call(p, "POST", "file_upload_handler", big)
    assert uploads_on_disk(p) == []


def _trickle(s: socket.socket, data: bytes, gap: float, closed_at: list[float]) -> None:
    start = time.monotonic()
    try:
        for i in range(len(data)):
            s.sendall(data[i : i + 1])
            time.sleep(gap)
    except OSError:
        pass
    closed_at.append(time.monotonic() - start)


def test_slow_loris_clients_are_cut_off_and_others_are_served(
    served: tuple[Project, list[Finished]],
) -> None:
    p, _ = served
    head = f"POST {p.base_path}cgi HTTP/1.1\r\nHost: x\r\nX-Slow: {'y' * 200}\r\n\r\n".encode()
    closed: list[float] = []
    socks = [_connect(p, f"127.0.0.{n}") for n in (2, 2, 2, 3, 3, 3)]
    threads = [threading.Thread(target=_trickle, args=(s, head, 0.1, closed)) for s in socks]
    # A slow body too: headers at once, then a byte every 0.1 s.
    slow_body = _connect(p, "127.0.0.4")
    _send_head(slow_body, p, "cgi", 500)
    threads.append(threading.Thread(target=_trickle, args=(slow_body, b"b" * 500, 0.1, closed)))
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        started = time.monotonic()
        assert b"<scheduler_reply>" in call(p, "POST", "cgi", sched(p.authenticator, "h1"))
        assert time.monotonic() - started < 1.0  # served at once, next to them
        for s in [*socks, slow_body]:  # each is closed at its deadline, though it keeps sending
            s.settimeout(LIMITS.header_timeout + LIMITS.body_timeout + 5)
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            assert b"<scheduler_reply>" not in data  # closed (perhaps after a 408), not served
    finally:
        for s in [*socks, slow_body]:
            s.close()
        for t in threads:
            t.join()
    # Cut off after ~1.5 s each, although they meant to go on for 20-50 s.
    assert len(closed) == len(threads) and max(closed) < 8


def test_too_many_connections_are_refused_and_other_addresses_still_get_in(
    served: tuple[Project, list[Finished]],
) -> None:
    p, _ = served
    flood = [_connect(p, ATTACKER) for _ in range(20)]
    try:
        time.sleep(0.3)
        assert p.open_connections <= LIMITS.max_per_address
        refused = 0
        for s in flood:
            s.settimeout(0.2)
            try:
                if s.recv(1) == b"":
                    refused += 1
            except TimeoutError:
                pass  # held open (for now)
        assert refused >= 20 - LIMITS.max_per_address
        # Many addresses fill the server: a newcomer from a less busy address still gets in.
        more = [_connect(p, f"127.0.1.{n}") for n in range(1, 9) for _ in range(2)]
        time.sleep(0.3)
        assert p.open_connections <= LIMITS.max_connections
        assert b"<scheduler_reply>" in call(p, "POST", "cgi", sched(p.authenticator, "h1"))
        for s in more:
            s.close()
    finally:
        for s in flood:
            s.close()


# --- the volunteer's side --------------------------------------------------------------------


def test_a_worker_refuses_a_boinc_attach_to_a_project_its_coordinator_does_not_serve(
    tmp_path: Path,
) -> None:
    started: list[object] = []

    def launcher(*args: object, **kw: object) -> object:
        started.append(args)
        raise AssertionError("no client may be started for a refused attach")

    ctx = WorkerContext(app="a1", root=tmp_path / "w", address="10.1.0.5", slots=1, node="n5")
    worker = BoincWorker(ctx, launcher=launcher)  # type: ignore[arg-type]
    auth = "0123456789abcdef" * 2

    def attach(url: str, app: str = "a1", authenticator: str = auth) -> BoincAttached:
        reply = asyncio.run(worker.handle(BoincAttach(app, 1, url, authenticator, "bjgrid a1")))
        assert isinstance(reply, BoincAttached)
        return reply

    no_link = attach("http://10.1.0.1:8080/bjg/a1/")
    assert not no_link.ok and "no coordinator" in no_link.error
    worker.serving("10.1.0.1")
    for url, why in [
        ("http://10.1.0.2:8080/bjg/a1/", "not served by this app's coordinator"),
        ("http://evil.example.org:80/bjg/a1/", "not served by this app's coordinator"),
        ("http://10.1.0.1:8080/bjg/other/", "not app a1's project"),
        ("http://10.1.0.1:8080/", "not app a1's project"),
        ("https://10.1.0.1:8080/bjg/a1/", "not a plain http URL"),
        ("http://user@10.1.0.1:8080/bjg/a1/", "not a plain http URL"),
        ("http://10.1.0.1/bjg/a1/", "no host and port"),
    ]:
        reply = attach(url)
        assert not reply.ok and why in reply.error, (url, reply.error)
    bad_auth = attach("http://10.1.0.1:8080/bjg/a1/", authenticator="x</authenticator>")
    assert not bad_auth.ok and "authenticator" in bad_auth.error
    assert started == [] and not (tmp_path / "w").exists()
    # After a proven re-homing the new coordinator's address is the one: the old one is not.
    worker.serving("10.1.0.9")
    assert "not served" in attach("http://10.1.0.1:8080/bjg/a1/").error
