"""A small BOINC GUI RPC client: attach, detach, update, and read a client's projects/results.

Protocol (BOINC ``rpc_doc.md``, ``client/gui_rpc_server_ops.cpp``): TCP (default port 31416),
each request ``<boinc_gui_rpc_request>…</boinc_gui_rpc_request>`` and each reply
``<boinc_gui_rpc_reply>…</boinc_gui_rpc_reply>`` end with the byte ``\\x03``. Authentication:
``<auth1/>`` returns a nonce, ``<auth2><nonce_hash>md5(nonce + password)</nonce_hash></auth2>``
answers ``<authorized/>``. The password is the client's ``gui_rpc_auth.cfg``. A client accepts
GUI RPC only from loopback unless told otherwise, so this talks to the local client.

Our own rather than PyPI ``boinc-client`` (lxml, marshmallow, xmltodict for ~6 calls). Blocking
sockets; one call at a time per instance (a lock); use ``asyncio.to_thread`` from async code.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from xml.sax.saxutils import escape

DEFAULT_PORT = 31416
_END = b"\x03"


class GuiRpcError(RuntimeError):
    """The client refused a request, or the connection failed."""


@dataclass(frozen=True)
class ProjectState:
    master_url: str
    name: str
    hostid: int
    suspended: bool
    dont_request_more_work: bool
    scheduler_rpc_in_progress: bool
    min_rpc_time: float


ACTIVE_TASK_EXECUTING = 1
ACTIVE_TASK_SUSPENDED = 9
"""``active_task_state`` values (BOINC ``common_defs.h``: PROCESS_EXECUTING, PROCESS_SUSPENDED)."""


@dataclass(frozen=True)
class ResultState:
    name: str
    project_url: str
    state: int
    exit_status: int
    active: bool
    ready_to_report: bool
    task_state: int = 0
    """The active task's ``active_task_state`` (0: no active task)."""
    suspended_via_gui: bool = False

    @property
    def suspended(self) -> bool:
        """The client has suspended this result's task (its processes are stopped)."""
        return self.active and self.task_state == ACTIVE_TASK_SUSPENDED


def _text(e: ET.Element, tag: str) -> str:
    return (e.findtext(tag) or "").strip()


def _num(e: ET.Element, tag: str) -> float:
    try:
        return float(_text(e, tag) or 0)
    except ValueError:
        return 0.0


class GuiRpcClient:
    """One authenticated connection to a boinc client's GUI RPC port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        password: str,
        timeout: float = 10.0,
        socket_factory: Callable[[], socket.socket] | None = None,
    ) -> None:
        """``socket_factory`` makes the (unconnected) TCP socket, e.g. in another network
        namespace; default: a plain IPv4 socket."""
        self.host = host
        self.port = port
        self.password = password
        self.timeout = timeout
        self._factory = socket_factory or (lambda: socket.socket(socket.AF_INET))
        self._sock: socket.socket | None = None
        self._buf = b""
        self._lock = threading.Lock()

    # --- connection -------------------------------------------------------------------------

    def connect(self) -> GuiRpcClient:
        with self._lock:
            if self._sock is None:
                self._open()
        return self

    def _open(self) -> None:
        sock = self._factory()
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
        except OSError as e:
            sock.close()
            raise GuiRpcError(f"cannot reach the client's GUI RPC at {self.port}: {e}") from e
        self._sock, self._buf = sock, b""
        nonce = _text(self._exchange("<auth1/>"), "nonce")
        digest = hashlib.md5((nonce + self.password).encode()).hexdigest()
        reply = self._exchange(f"<auth2><nonce_hash>{digest}</nonce_hash></auth2>")
        if reply.find("authorized") is None:
            self._close()
            raise GuiRpcError("GUI RPC authentication refused (wrong password?)")

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> GuiRpcClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _exchange(self, body: str) -> ET.Element:
        assert self._sock is not None
        msg = f"<boinc_gui_rpc_request>\n{body}\n</boinc_gui_rpc_request>\n".encode()
        try:
            self._sock.sendall(msg + _END)
            while _END not in self._buf:
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise GuiRpcError("the client closed the GUI RPC connection")
                self._buf += chunk
        except OSError as e:
            self._close()
            raise GuiRpcError(f"GUI RPC failed: {e}") from e
        raw, _, self._buf = self._buf.partition(_END)
        try:
            return ET.fromstring(raw.decode("utf-8", "replace"))
        except ET.ParseError as e:
            raise GuiRpcError(f"unreadable GUI RPC reply: {e}") from e

    def call(self, body: str) -> ET.Element:
        """Send one request (connecting first if needed); the reply's root element."""
        with self._lock:
            if self._sock is None:
                self._open()
            reply = self._exchange(body)
        if reply.find("unauthorized") is not None:
            raise GuiRpcError("GUI RPC request unauthorized")
        error = reply.find("error")
        if error is not None:
            raise GuiRpcError((error.text or "error").strip())
        return reply

    def _ok(self, body: str) -> None:
        reply = self.call(body)
        if reply.find("success") is None:
            raise GuiRpcError(f"unexpected GUI RPC reply: {ET.tostring(reply)[:200]!r}")

    # --- operations -------------------------------------------------------------------------

    def project_attach(self, url: str, authenticator: str, name: str = "") -> None:
        """Start attaching (the client fetches the master page and does a scheduler RPC)."""
        self._ok(
            "<project_attach>"
            f"<project_url>{escape(url)}</project_url>"
            f"<authenticator>{escape(authenticator)}</authenticator>"
            f"<project_name>{escape(name)}</project_name>"
            "</project_attach>"
        )

    def project_attach_poll(self) -> tuple[int, list[str]]:
        """(error_num, messages) of the last attach: 0 done, -204 (ERR_IN_PROGRESS) pending."""
        reply = self.call("<project_attach_poll/>")
        poll = reply.find("project_attach_reply")
        if poll is None:
            return 0, []
        messages = [(m.text or "").strip() for m in poll.iter("message")]
        return int(_num(poll, "error_num")), messages

    def _project_op(self, op: str, url: str) -> None:
        self._ok(f"<{op}><project_url>{escape(url)}</project_url></{op}>")

    def project_detach(self, url: str) -> None:
        self._project_op("project_detach", url)

    def project_update(self, url: str) -> None:
        """Ask for a scheduler RPC now (it also clears the project's back-off)."""
        self._project_op("project_update", url)

    def projects(self) -> list[ProjectState]:
        reply = self.call("<get_project_status/>")
        return [
            ProjectState(
                master_url=_text(p, "master_url"),
                name=_text(p, "project_name"),
                hostid=int(_num(p, "hostid")),
                suspended=p.find("suspended_via_gui") is not None,
                dont_request_more_work=p.find("dont_request_more_work") is not None,
                scheduler_rpc_in_progress=p.find("scheduler_rpc_in_progress") is not None,
                min_rpc_time=_num(p, "min_rpc_time"),
            )
            for p in reply.iter("project")
        ]

    def results(self) -> list[ResultState]:
        reply = self.call("<get_results><active_only>0</active_only></get_results>")
        return [
            ResultState(
                name=_text(r, "name"),
                project_url=_text(r, "project_url"),
                state=int(_num(r, "state")),
                exit_status=int(_num(r, "exit_status")),
                active=r.find("active_task") is not None,
                ready_to_report=r.find("ready_to_report") is not None,
                task_state=int(_num(r, "active_task/active_task_state")),
                suspended_via_gui=r.find("suspended_via_gui") is not None,
            )
            for r in reply.iter("result")
        ]

    def project_suspend(self, url: str) -> None:
        """Suspend the project's tasks (the client stops them at its next poll)."""
        self._project_op("project_suspend", url)

    def project_resume(self, url: str) -> None:
        self._project_op("project_resume", url)

    def project_nomorework(self, url: str) -> None:
        """Fetch no more work from the project (until ``project_allowmorework``)."""
        self._project_op("project_nomorework", url)

    def project_allowmorework(self, url: str) -> None:
        self._project_op("project_allowmorework", url)

    def abort_result(self, url: str, name: str) -> None:
        """Abort one result: the client kills its task and reports it aborted."""
        self._ok(
            "<abort_result>"
            f"<project_url>{escape(url)}</project_url><name>{escape(name)}</name>"
            "</abort_result>"
        )

    def quit(self) -> None:
        """Tell the client to exit (it stops its tasks first)."""
        self._ok("<quit/>")


__all__ = [
    "ACTIVE_TASK_EXECUTING",
    "ACTIVE_TASK_SUSPENDED",
    "DEFAULT_PORT",
    "GuiRpcClient",
    "GuiRpcError",
    "ProjectState",
    "ResultState",
]
