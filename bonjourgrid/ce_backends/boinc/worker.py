"""The BOINC CE, volunteer side: attach this machine's boinc client to the app's project.

::

    BoincAttach(master URL, authenticator) ──► handle(): a client of our own (boinc --dir
                                                ctx.root/client, a free GUI RPC port on
                                                loopback) unless one is configured; detach
                                                older projects of this app; project_attach
                                           ◄── BoincAttached(ok, client, error)
    every nudge_interval                       project_update when the client has results
                                                to report, or room while the project has
                                                work waiting (GET <master>/work)
    close()                                    project_detach (other projects untouched),
                                                stop our client, remove ctx.root

The owner comes first, by BOINC's own means: ``suspend`` suspends this app's project in the
client (GUI RPC ``project_suspend``: the client stops its tasks at its next 1 s poll, the
owner's other projects untouched), ``resume`` resumes it, and ``give_back`` (past the maximum
suspension) aborts its results and asks for no more work: the client reports them aborted at
once (``project_update``) and the project issues each again, to another client, as the same
attempt (issuer.py). BOINC's own "user active" check stays off (``run_if_user_active``):
bjgrid's owner policy decides, on every backend alike. ``running`` is what the client held at
its last look (``get_results``, every ``nudge_interval``).

A BoincAttach is obeyed only for a project of this app served by the coordinator this
volunteer serves now (``attach_problem``): ``http://<the coordinator's channel address>:<any
port>/bjg/<app>/``; a rogue key holder cannot point the client at another host (someone's
BOINC project, a LAN service) and gets ``BoincAttached(ok=False)`` with the reason.

BOINC moves the tasks: ``stage`` keeps nothing, ``start`` refuses ``RunTask``. A volunteer
whose owner already runs boinc-client can point bjgrid at it: ``BJGRID_BOINC_DIR`` (its data
directory, for ``gui_rpc_auth.cfg``) and ``BJGRID_BOINC_PORT`` (its GUI RPC port, default
31416); that client is only attached and detached, never started or stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bonjourgrid.ce_backends import leftovers
from bonjourgrid.ce_backends.base import WorkerBackend
from bonjourgrid.ce_backends.boinc.client import BoincClient, Launcher
from bonjourgrid.ce_backends.boinc.guirpc import DEFAULT_PORT, GuiRpcClient, GuiRpcError
from bonjourgrid.ce_backends.boinc.timing import BoincTimings
from bonjourgrid.control.messages import BoincAttach, BoincAttached, RunTask

if TYPE_CHECKING:
    from bonjourgrid.ce_backends.registry import WorkerContext

log = logging.getLogger(__name__)

DIR_ENV = "BJGRID_BOINC_DIR"
PORT_ENV = "BJGRID_BOINC_PORT"
WORK_QUERY_TIMEOUT = 2.0
"""Seconds for the project's ``work`` answer (a LAN round trip; a miss only skips a nudge)."""

SocketFactory = Callable[[], socket.socket]
_AUTHENTICATOR = re.compile(r"[0-9a-f]{32}")
"""What ``Project.add_account`` makes; anything else is not from a bjgrid project."""
_RESULT_NAME = re.compile(r"bjg[0-9]+-[0-9a-f]+_([A-Za-z0-9][A-Za-z0-9_-]{0,63})_([0-9]{1,6})")
"""issuer.Issuer._issue's result names: ``bjg<seq>-<token>_<task>_<attempt>``."""
OWNER_OK, OWNER_BUSY, OWNER_GONE = "ok", "busy", "gone"


def attempt_of(result: str) -> str | None:
    """``task#attempt`` of one of our project's result names (a task's dots read as dashes,
    as the issuer wrote them); None for any other name."""
    m = _RESULT_NAME.fullmatch(result)
    return f"{m.group(1)}#{int(m.group(2))}" if m else None


def attach_problem(master_url: str, authenticator: str, app: str, coordinator: str | None) -> str:
    """Why a BoincAttach for ``app`` must not be obeyed ('' when it may), given the address of
    the coordinator this volunteer serves now (None: none known)."""
    if coordinator is None:
        return "no coordinator is known for this app here"
    try:
        parts = urlsplit(master_url)
        port = parts.port
    except ValueError as e:
        return f"unreadable master URL {master_url!r}: {e}"
    if parts.scheme != "http" or parts.username or parts.password or parts.query or parts.fragment:
        return f"master URL {master_url!r} is not a plain http URL"
    if port is None or not parts.hostname:
        return f"master URL {master_url!r} names no host and port"
    if parts.path != f"/bjg/{app}/":
        return f"master URL {master_url!r} is not app {app}'s project"
    if not _same_address(parts.hostname, coordinator):
        return (
            f"master URL {master_url!r} is not served by this app's coordinator "
            f"({coordinator}): refused"
        )
    if not _AUTHENTICATOR.fullmatch(authenticator):
        return "the authenticator is not one a bjgrid project makes"
    return ""


def _same_address(host: str, coordinator: str) -> bool:
    def norm(a: str) -> str:
        try:
            ip = ipaddress.ip_address(a.split("%", 1)[0])
        except ValueError:
            return a.lower()
        mapped = getattr(ip, "ipv4_mapped", None)
        return str(mapped or ip)

    return norm(host) == norm(coordinator)


def _plain_socket() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


class BoincWorker(WorkerBackend):
    """One app's BOINC side on a volunteer.

    ``launcher`` starts our own client (tests: a LAN host's ``popen``); ``socket_factory``
    makes the TCP sockets that reach it and the project (tests: sockets in that host's
    network namespace).
    """

    name = "boinc"
    handles = (BoincAttach,)

    def __init__(
        self,
        ctx: WorkerContext,
        *,
        timings: BoincTimings | None = None,
        launcher: Launcher | None = None,
        socket_factory: SocketFactory | None = None,
    ) -> None:
        self.ctx = ctx
        self.timings = timings or BoincTimings.from_env()
        self._launcher: Launcher = launcher or functools.partial(
            subprocess.Popen, start_new_session=True
        )
        self._sockets = socket_factory or _plain_socket
        self.client: BoincClient | None = None
        """The client we started (None while none, or when a configured one is used)."""
        self.rpc: GuiRpcClient | None = None
        self.url: str | None = None
        """The project this app's client is attached to."""
        self.coordinator: str | None = None
        """The IP address of the coordinator this volunteer serves now (``serving``)."""
        self._nudger: asyncio.Task[None] | None = None
        self.nudges = 0
        """``project_update`` calls made (for tests and measurements)."""
        self._owner = OWNER_OK
        """What the owner policy last said; applied to the client by ``_apply_owner``."""
        self._owner_lock = threading.Lock()
        self._applying: set[asyncio.Future[list[str]]] = set()
        self._held: list[str] = []
        """``task#attempt`` of the results the client held at the last look."""

    # --- the owner policy ----------------------------------------------------------------

    def suspend(self) -> None:
        self._set_owner(OWNER_BUSY)

    def resume(self) -> None:
        self._set_owner(OWNER_OK)

    async def give_back(self, reason: str) -> list[str] | None:
        self._owner = OWNER_GONE
        return await asyncio.to_thread(self._apply_owner_safely)

    def running(self) -> list[str]:
        return list(self._held)

    def _set_owner(self, owner: str) -> None:
        """Record the owner's state and apply it in a thread (GUI RPC blocks); each apply
        reads the latest state, so their order does not matter."""
        self._owner = owner
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._apply_owner_safely()
            return
        fut = asyncio.ensure_future(asyncio.to_thread(self._apply_owner_safely), loop=loop)
        self._applying.add(fut)
        fut.add_done_callback(self._applying.discard)

    def _apply_owner_safely(self) -> list[str]:
        try:
            return self._apply_owner()
        except (GuiRpcError, OSError) as e:
            log.warning(
                "app %s: cannot tell the BOINC client (%s): %s", self.ctx.app, self._owner, e
            )
            return []

    def _apply_owner(self) -> list[str]:
        """Make the client do what ``_owner`` says for our project; the attempts aborted."""
        with self._owner_lock:
            rpc, url, owner = self.rpc, self.url, self._owner
            if rpc is None or url is None:
                return []
            if owner == OWNER_OK:
                rpc.project_allowmorework(url)
                rpc.project_resume(url)
                return []
            if owner == OWNER_BUSY:
                rpc.project_suspend(url)
                return []
            rpc.project_nomorework(url)  # none of this app's work here while the owner stays
            given: list[str] = []
            for r in rpc.results():
                if r.project_url == url and not r.ready_to_report:
                    rpc.abort_result(url, r.name)
                    given.append(attempt_of(r.name) or r.name)
            rpc.project_resume(url)  # nothing left to run; lets it report the aborts
            rpc.project_update(url)
            self._held = []
            return given

    # --- WorkerBackend -------------------------------------------------------------------

    async def stage(self, bundle: bytes, sha256: str) -> None:
        return None  # the project serves the app's files to the client, signed

    def start(self, msg: RunTask) -> None:
        raise RuntimeError("a BOINC worker runs no RunTask: its client fetches the work")

    async def cancel(self, task: str, attempt: int) -> None:
        return None  # the project aborts the result on the client's next RPC

    def serving(self, coordinator_address: str) -> None:
        self.coordinator = coordinator_address

    async def handle(self, msg: object) -> object | None:
        if not isinstance(msg, BoincAttach):
            return await super().handle(msg)
        why = attach_problem(msg.master_url, msg.authenticator, self.ctx.app, self.coordinator)
        if msg.app != self.ctx.app:
            why = f"a BoincAttach for app {msg.app} on app {self.ctx.app}'s link"
        if why:
            log.warning("app %s: BoincAttach refused: %s", self.ctx.app, why)
            return BoincAttached(msg.app, False, why, "")
        try:
            await asyncio.to_thread(self._attach, msg)
        except Exception as e:
            log.warning("app %s: BOINC attach failed: %s", self.ctx.app, e)
            return BoincAttached(msg.app, False, str(e) or type(e).__name__, "")
        if self._nudger is None:
            self._nudger = asyncio.create_task(self._nudge_loop(), name=f"boinc {self.ctx.app}")
        return BoincAttached(msg.app, True, "", socket.gethostname())

    async def close(self) -> None:
        if self._nudger is not None:
            self._nudger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._nudger
            self._nudger = None
        await asyncio.to_thread(self._close)

    # --- the client (blocking; run in threads) --------------------------------------------

    def _attach(self, msg: BoincAttach) -> None:
        rpc = self._client(msg.master_url)
        mine = f"/bjg/{msg.app}/"
        urls = [p.master_url for p in rpc.projects()]
        for url in urls:  # this app's project under an earlier term (another address)
            if _path_of(url) == mine and url != msg.master_url:
                rpc.project_detach(url)
        if msg.master_url not in urls:
            rpc.project_attach(msg.master_url, msg.authenticator, msg.project_name)
        if msg.master_url not in [p.master_url for p in rpc.projects()]:
            raise RuntimeError(f"the client does not list {msg.master_url} after attaching")
        self.url = msg.master_url
        if self._owner != OWNER_OK:  # re-attached (a new coordinator) while the owner is here
            self._apply_owner()

    def _client(self, master_url: str) -> GuiRpcClient:
        """The GUI RPC connection to the client, starting ours the first time."""
        if self.rpc is not None:
            return self.rpc
        configured = os.environ.get(DIR_ENV)
        if configured:
            password = (Path(configured) / "gui_rpc_auth.cfg").read_text().strip()
            port = int(os.environ.get(PORT_ENV) or DEFAULT_PORT)
            self.rpc = GuiRpcClient(
                "127.0.0.1", port, password=password, socket_factory=self._sockets
            ).connect()
            return self.rpc
        client = BoincClient(
            self.ctx.root / "client",
            gui_rpc_port=self._free_port(),
            ncpus=self.ctx.slots,
            network_test_url=master_url,
            launcher=self._launcher,
            socket_factory=self._sockets,
        )
        self.ctx.root.mkdir(parents=True, exist_ok=True)
        self.client = client.start()
        if client.pid is not None:  # stopped at the daemon's next start if it crashes
            leftovers.record(self.ctx.root, client.pid)
        self.rpc = client.rpc
        return self.rpc

    def _free_port(self) -> int:
        with contextlib.closing(self._sockets()) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
            return port

    def _close(self) -> None:
        rpc, url = self.rpc, self.url
        if rpc is not None and url is not None:
            try:
                rpc.project_detach(url)
            except GuiRpcError as e:
                log.warning("app %s: could not detach from %s: %s", self.ctx.app, url, e)
        self.url = None
        if self.client is not None:
            self.client.stop()
            self.client = None
        elif rpc is not None:
            rpc.close()
        self.rpc = None
        shutil.rmtree(self.ctx.root, ignore_errors=True)

    # --- keeping the client polling ---------------------------------------------------------

    async def _nudge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.timings.nudge_interval)
            try:
                await asyncio.to_thread(self._nudge)
            except (GuiRpcError, OSError) as e:
                log.debug("app %s: BOINC nudge failed: %s", self.ctx.app, e)

    def _nudge(self) -> None:
        """``project_update`` when results wait to be reported, or when the client has room
        while the project has work waiting (the client would otherwise wait for its 5 s
        scheduler poll, ``next_rpc_delay`` or a work-fetch back-off of minutes)."""
        rpc, url = self.rpc, self.url
        if rpc is None or url is None:
            return
        project = next((p for p in rpc.projects() if p.master_url == url), None)
        if project is None or project.scheduler_rpc_in_progress:
            return
        held = [r for r in rpc.results() if r.project_url == url]
        self._held = [
            a for r in held if not r.ready_to_report and (a := attempt_of(r.name)) is not None
        ][: max(1, self.ctx.slots * self.timings.queue_per_cpu)]
        ready = any(r.ready_to_report for r in held)
        room = len(held) < self.ctx.slots * self.timings.queue_per_cpu
        room = room and self._owner == OWNER_OK  # no work fetched for a busy machine
        if ready or (room and self._work_waiting(url)):
            rpc.project_update(url)
            self.nudges += 1

    def _work_waiting(self, url: str) -> bool:
        """Whether the project has attempts no client holds yet (``GET <master>/work``)."""
        parts = urlsplit(url)
        try:
            with contextlib.closing(self._sockets()) as s:
                s.settimeout(WORK_QUERY_TIMEOUT)
                s.connect((parts.hostname or "", parts.port or 80))
                s.sendall(f"GET {parts.path}work HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
        except OSError:
            return False
        _, _, body = data.partition(b"\r\n\r\n")
        words = body.split()
        return len(words) == 2 and words[0] == b"waiting" and words[1] != b"0"


def _path_of(url: str) -> str:
    try:
        return urlsplit(url).path
    except ValueError:
        return ""


__all__ = ["DIR_ENV", "PORT_ENV", "BoincWorker", "attach_problem", "attempt_of"]
