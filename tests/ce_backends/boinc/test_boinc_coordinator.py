"""BoincCoordinator against scheduler requests on loopback (no boinc client needed): accounts
per worker, results handed to the core (again when it refuses one), lost results issued again
as the same attempt, the signing key kept across a takeover, and nothing left after stop.

The real client is in test_boinc_real_client.py and tests/integration/test_boinc_lan.py.
"""

from __future__ import annotations

import asyncio
import http.client
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bonjourgrid.app.spec import TaskSpec
from bonjourgrid.ce_backends.base import WorkerHandle
from bonjourgrid.ce_backends.boinc.coordinator import SAVED_KEY, BoincCoordinator
from bonjourgrid.ce_backends.boinc.timing import BoincTimings
from bonjourgrid.ce_backends.registry import CoordinatorContext
from bonjourgrid.control.messages import BoincAttach, BoincAttached, StageAck, StageApp, TaskResult
from bonjourgrid.states.tasktable import Attempt

TIMINGS = BoincTimings(next_rpc_delay=1, deadline=0.6, grace=0.6, lost_reissues=1, poll=0.05)
BADSIG = """<result><name>{name}</name><exit_status>-186</exit_status><state>1</state>
<stderr_out><![CDATA[<file_xfer_error><error_code>-120 (RSA key check failed for file)
</error_code><error_message>signature verification failed</error_message></file_xfer_error>
]]></stderr_out></result>"""


class Handle(WorkerHandle):
    def __init__(self, node: str) -> None:
        self.node, self.host, self.slots = node, f"host-{node}", 1
        self.sent: list[object] = []

    async def send(self, msg: object) -> None:
        self.sent.append(msg)

    async def expect(self, kind: type, timeout: float) -> object:
        msg = self.sent[-1]
        if isinstance(msg, StageApp):  # every backend stages first
            return StageAck(msg.app, msg.sha256, True, "")
        assert isinstance(msg, BoincAttach)
        return BoincAttached(msg.app, True, "", self.host)


def make(tmp: Path, delivered: list[tuple[TaskResult, str | None]], **kw: Any) -> BoincCoordinator:
    refuse = {"left": kw.pop("refuse", 0)}

    async def on_result(r: TaskResult, node: str | None) -> None:
        if refuse["left"]:
            refuse["left"] -= 1
            raise RuntimeError("not now")
        delivered.append((r, node))

    app = SimpleNamespace(app_id="a1", term=1, bundle=b"", bundle_sha="")
    ctx = CoordinatorContext(app, "127.0.0.1", tmp / "ce", on_result, **kw)
    return BoincCoordinator(ctx, timings=TIMINGS)


def rpc(ce: BoincCoordinator, auth: str, host: str, report: str = "", other: str = "") -> bytes:
    project = ce.project
    assert project is not None
    body = f"""<scheduler_request><authenticator>{auth}</authenticator><hostid>0</hostid>
<cpu_req_secs>1</cpu_req_secs><platform_name>x86_64-pc-linux-gnu</platform_name>
<host_info><host_cpid>{host}</host_cpid><domain_name>{host}</domain_name>
<p_ncpus>1</p_ncpus><m_nbytes>1e9</m_nbytes></host_info>{report}
<other_results>{other}</other_results></scheduler_request>""".encode()
    conn = http.client.HTTPConnection(project.address, project.port, timeout=5)
    try:
        conn.request("POST", project.base_path + "cgi", body=body)
        return conn.getresponse().read()
    finally:
        conn.close()


def result_names(reply: bytes) -> list[str]:
    parts = reply.split(b"<result>")[1:]
    return [p.split(b"<name>")[1].split(b"</name>")[0].decode() for p in parts]


def task(tid: str) -> TaskSpec:
    return TaskSpec(id=tid, command="true", outputs=("o.txt",))


async def until(cond: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.02)


def test_a_refused_signature_reaches_the_core_with_the_clients_reason_and_is_redelivered(
    tmp_path: Path,
) -> None:
    async def go() -> None:
        delivered: list[tuple[TaskResult, str | None]] = []
        ce = make(tmp_path, delivered, refuse=1)
        await ce.start()
        try:
            w = Handle("n1")
            await ce.prepare(w)
            stage, attach = w.sent
            assert isinstance(stage, StageApp)
            assert isinstance(attach, BoincAttach) and attach.master_url == ce.master_url
            await ce.launch(task("t"), Attempt("t", 1, ""), None, b"")
            assert ce.running() == [("t", 1)]
            (name,) = result_names(rpc(ce, attach.authenticator, "h1"))
            rpc(ce, attach.authenticator, "h1", BADSIG.format(name=name))
            await until(lambda: delivered)  # the first offer was refused, the second taken
            (r, node), = delivered  # fmt: skip
            assert (r.task, r.attempt, r.exit_code, node) == ("t", 1, None, "n1")
            assert "RSA key check failed" in r.error
            assert ce.running() == []
        finally:
            await ce.stop()
        assert not (tmp_path / "ce").exists()

    asyncio.run(go())


def test_a_lost_worker_s_result_goes_to_another_as_the_same_attempt(tmp_path: Path) -> None:
    async def go() -> None:
        delivered: list[tuple[TaskResult, str | None]] = []
        ce = make(tmp_path, delivered)
        await ce.start()
        try:
            w1, w2 = Handle("n1"), Handle("n2")
            await ce.prepare(w1)
            await ce.prepare(w2)
            a1, a2 = (w.sent[-1] for w in (w1, w2))
            assert isinstance(a1, BoincAttach) and isinstance(a2, BoincAttach)
            assert a1.authenticator != a2.authenticator
            await ce.launch(task("t"), Attempt("t", 1, ""), None, b"")
            assert len(result_names(rpc(ce, a1.authenticator, "h1"))) == 1
            assert result_names(rpc(ce, a2.authenticator, "h2")) == []
            ce.worker_lost("n1")
            (again,) = result_names(rpc(ce, a2.authenticator, "h2"))
            assert again.endswith("_t_1")  # same attempt, a new result
            assert ce.running() == [("t", 1)]
            # Lost once more (its deadline passes): lost_reissues=1 is used up, so the core
            # hears of a failed attempt.
            await until(lambda: delivered, timeout=5)
            (r, node), = delivered  # fmt: skip
            assert (r.task, r.attempt, r.exit_code) == ("t", 1, None)
            assert "deadline" in r.error and node == "n2"
        finally:
            await ce.stop()

    asyncio.run(go())


def test_the_signing_key_is_saved_and_served_again_after_a_takeover(tmp_path: Path) -> None:
    async def go() -> None:
        first = make(tmp_path / "1", [])
        await first.start()
        saved = first.saved_state()
        key = first.key
        await first.stop()
        assert set(saved) == {SAVED_KEY}
        again = make(tmp_path / "2", [], saved=saved)
        await again.start()
        try:
            assert again.key is not None and key is not None
            assert again.key.public_text == key.public_text
            assert again.saved_state() == saved
        finally:
            await again.stop()

    asyncio.run(go())
