"""One application's BOINC project: the HTTP server real boinc clients attach to.

Endpoints, all under the per-app master URL ``http://ADDR:PORT/bjg/<app>/``:

    GET  .../                      master page (both scheduler-URL forms the client parses)
    POST .../cgi                   scheduler RPC (``scheduler.py`` codec, ``issuer.py`` model)
    GET  .../download/<name>       app-version files and job files (``Range: bytes=N-``)
    POST .../file_upload_handler   uploads (``get_file_size`` queries, offsets)
    GET  .../work                  ``waiting N``: attempts no client holds yet (for the
                                   volunteers' agents, which then ask their client for an RPC)

Accounts: ``authenticator`` is the project's own; ``add_account(node)`` makes one per
recruited volunteer, and that volunteer's requests are then known by its node id (results
name it in ``Finished.host``; ``host_lost(node)`` reissues its results).

Threading contract: the server runs in its own thread (``ThreadingHTTPServer``, one thread per
connection); the issuer is guarded by one lock; ``on_result`` is called from a server thread,
one call at a time, after the reply that caused it was sent; it must not block for long
(hand over to an event loop with ``call_soon_threadsafe``). Deadlines are checked every
``poll`` seconds by the server loop. Uploads are accepted only for live results' output files,
up to their ``max_nbytes``; the authenticator must be the project's.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import secrets
import socket
import socketserver
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bonjourgrid.ce_backends.boinc.issuer import (
    Event,
    Failed,
    Issuer,
    IssuerConfig,
    Job,
    Succeeded,
)
from bonjourgrid.ce_backends.boinc.scheduler import (
    Release,
    Reply,
    RequestError,
    build_reply,
    parse_request,
)
from bonjourgrid.ce_backends.boinc.signing import CodeSignKey
from bonjourgrid.ce_backends.boinc.wrapper import (
    JOB_OPEN_NAME,
    OutputError,
    StoredFile,
    app_files,
    job_file,
    read_output,
)

log = logging.getLogger(__name__)

APP_NAME = "bjgapp"
VERSION_NUM = 1


@dataclass(frozen=True)
class ProjectConfig:
    next_rpc_delay: float = 30.0
    """Clients come back at least this often (BOINC's own back-off can reach 24 h)."""
    poll: float = 0.5
    """Seconds between deadline checks."""
    issuer: IssuerConfig = field(default_factory=IssuerConfig)


@dataclass(frozen=True)
class Finished:
    """One attempt's end, as the coordinator core wants it."""

    task: str
    attempt: int
    exit_code: int | None
    outputs: bytes
    """tar.gz of stdout, stderr and (exit 0) the declared outputs."""
    stdout: bytes
    stderr: bytes
    seconds: float
    error: str
    """'' for a task that ran to its exit; otherwise why the attempt failed."""
    host: str
    reissued: int | None = None
    requeued: bool = False
    """The result was lost and the same attempt waits for another client: not an outcome."""


ResultCallback = Callable[[Finished], None]


def logs_archive(stdout: bytes, stderr: bytes) -> bytes:
    """A tar.gz holding just ``stdout`` and ``stderr`` (for attempts that never ran)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("stderr", stderr), ("stdout", stdout)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


class Project:
    """The per-app project server. ``start()`` it, ``submit()`` attempts, ``stop()`` it."""

    def __init__(
        self,
        *,
        app_id: str,
        key: CodeSignKey,
        bundle: bytes,
        root: Path,
        on_result: ResultCallback,
        address: str = "127.0.0.1",
        port: int = 0,
        listen_socket: socket.socket | None = None,
        config: ProjectConfig | None = None,
        files: tuple[tuple[StoredFile, str | None], ...] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``listen_socket``: an unbound TCP socket to use (e.g. made in another network
        namespace); it is bound to ``address:port``. ``files`` replaces the signed app-version
        files (tests serve a tampered one)."""
        self.app_id = app_id
        self.key = key
        self.root = root
        self.config = config or ProjectConfig()
        self.authenticator = secrets.token_hex(16)
        self._accounts: dict[str, str] = {self.authenticator: ""}
        """authenticator -> node id ('' for the project's own account)."""
        self._on_result = on_result
        self._clock = clock
        self._issuer = Issuer(self.config.issuer)
        self._lock = threading.Lock()
        self._callback_lock = threading.Lock()
        self._files: dict[str, Path] = {}
        self._downloads = root / "download"
        self._uploads = root / "upload"
        self._downloads.mkdir(parents=True, exist_ok=True)
        self._uploads.mkdir(parents=True, exist_ok=True)
        release_files = files if files is not None else app_files(key, bundle)
        for stored, _ in release_files:
            self._store(stored)
        self._release = Release(
            APP_NAME,
            VERSION_NUM,
            tuple((s.ref, open_name) for s, open_name in release_files),
            flops=self.config.issuer.flops,
        )
        self._server = _Server(self, address, port, listen_socket)
        host, port = self._server.server_address[:2]
        self.address: str = host.decode() if isinstance(host, bytes) else str(host)
        self.port: int = int(port)
        self._thread: threading.Thread | None = None
        self.rpcs = 0
        """Scheduler RPCs served (for tests and measurements)."""

    # --- URLs -------------------------------------------------------------------------------

    @property
    def base_path(self) -> str:
        return f"/bjg/{self.app_id}/"

    @property
    def master_url(self) -> str:
        return f"http://{self.address}:{self.port}{self.base_path}"

    @property
    def scheduler_url(self) -> str:
        return self.master_url + "cgi"

    def master_page(self) -> bytes:
        sched = self.scheduler_url
        return (
            f"<html><head><title>bjgrid {self.app_id}</title>\n"
            f'<link rel="boinc_scheduler" href="{sched}">\n'
            f"</head><body>\n<!-- <scheduler>{sched}</scheduler> -->\n"
            f"bonjourgrid application {self.app_id}\n</body></html>\n"
        ).encode()

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> Project:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                args=(self.config.poll,),
                name=f"boinc-project-{self.app_id}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Project:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_account(self, node: str) -> str:
        """The authenticator of volunteer ``node`` (made on first call, then the same)."""
        with self._lock:
            for auth, owner in self._accounts.items():
                if owner == node:
                    return auth
            auth = secrets.token_hex(16)
            self._accounts[auth] = node
            return auth

    # --- work -------------------------------------------------------------------------------

    def submit(
        self,
        *,
        task: str,
        attempt: int,
        command: str | tuple[str, ...],
        env: dict[str, str] | None = None,
        outputs: tuple[str, ...] = (),
        timeout: float | None = None,
        inputs: bytes = b"",
        cpus: int = 1,
        memory_mb: int = 0,
        retries: int = 0,
    ) -> None:
        """Queue one attempt of a task; the next client asking for work gets it."""
        stored = job_file(
            app=self.app_id,
            task=task,
            command=command,
            env=env or {},
            outputs=outputs,
            timeout=timeout,
            inputs=inputs,
        )
        self._store(stored)
        job = Job(task, attempt, ((stored.ref, JOB_OPEN_NAME),), cpus, timeout, memory_mb, retries)
        with self._lock:
            self._issuer.submit(job)

    def cancel(self, task: str, attempt: int) -> bool:
        with self._lock:
            return self._issuer.cancel(task, attempt)

    def host_lost(self, host: str) -> None:
        """Fail the results held by ``host`` now, instead of at their deadlines."""
        with self._lock:
            events = self._issuer.host_lost(host)
        self._deliver(events)

    @property
    def waiting(self) -> int:
        """Attempts not yet sent to any client."""
        with self._lock:
            return self._issuer.pending

    @property
    def running(self) -> int:
        with self._lock:
            return self._issuer.running

    def attempts(self) -> list[tuple[str, int]]:
        """(task, attempt) of every attempt waiting for a client or held by one."""
        with self._lock:
            return self._issuer.attempts()

    # --- request handling (server threads) -------------------------------------------------

    def _store(self, stored: StoredFile) -> None:
        path = self._downloads / stored.ref.name
        if not path.exists():
            tmp = path.with_suffix(".part")
            tmp.write_bytes(stored.data)
            tmp.replace(path)
        self._files[stored.ref.name] = path

    def download_path(self, name: str) -> Path | None:
        return self._files.get(name)

    def scheduler_rpc(self, body: bytes) -> tuple[bytes, list[Event]]:
        req = parse_request(body)
        base = Reply(
            project_name=f"bjgrid {self.app_id}",
            master_url=self.master_url,
            download_url=self.master_url + "download/",
            upload_url=self.master_url + "file_upload_handler",
            code_sign_key=self.key.public_text,
            code_sign_key_signature=self.key.key_signature,
            next_rpc_delay=self.config.next_rpc_delay,
            platform=req.platforms[0] if req.platforms else "x86_64-pc-linux-gnu",
        )
        with self._lock:
            node = self._accounts.get(req.authenticator)
        if node is None:
            log.warning("project %s: request with an unknown authenticator", self.app_id)
            return build_reply(replace(base, messages=("unknown account",))), []
        if node:
            req = replace(req, domain_name=node)
        with self._lock:
            self.rpcs += 1
            d = self._issuer.handle(req, self._clock())
        reply = replace(
            base,
            hostid=d.hostid,
            release=self._release,
            assignments=d.assignments,
            acks=d.acks,
            aborts=d.aborts,
        )
        return build_reply(reply), list(d.events)

    def upload(self, body: bytes) -> bytes:
        """Answer one ``file_upload_handler`` request."""
        head, sep, data = body.partition(b"<data>\n")
        text = head.decode("utf-8", "replace")
        size_query = _tag(text, "get_file_size")
        if size_query:
            path = self._upload_path(size_query)
            if path is None:
                return _upload_reply(-1, "unknown file")
            return _upload_reply(0, size=path.stat().st_size if path.exists() else 0)
        name = _tag(text, "name")
        path = self._upload_path(name)
        if not sep or path is None:
            return _upload_reply(-1, "unknown file")
        offset = int(float(_tag(text, "offset") or 0))
        nbytes = int(float(_tag(text, "nbytes") or 0))
        limit = self.config.issuer.max_output_bytes
        if nbytes > limit or offset + len(data) > limit:
            return _upload_reply(-1, "file too large")
        have = path.stat().st_size if path.exists() else 0
        if offset > have:
            return _upload_reply(1, "offset past the end of the file")
        with open(path, "r+b" if path.exists() else "wb") as f:
            f.seek(offset)
            f.write(data)
            f.truncate()
        md5 = _tag(text, "md5_cksum")
        complete = offset + len(data) >= nbytes
        if md5 and complete and hashlib.md5(path.read_bytes()).hexdigest() != md5:
            path.unlink()
            return _upload_reply(1, "checksum mismatch")
        return _upload_reply(0)

    def _upload_path(self, name: str) -> Path | None:
        with self._lock:
            known = self._issuer.result_of(name) is not None
        return self._uploads / name if known else None

    def check_deadlines(self) -> None:
        with self._lock:
            events = self._issuer.expire(self._clock())
        self._deliver(events)

    def _deliver(self, events: list[Event] | tuple[Event, ...]) -> None:
        for ev in events:
            finished = self._finished(ev)
            with self._callback_lock:
                try:
                    self._on_result(finished)
                except Exception:
                    log.exception("project %s: result callback failed", self.app_id)

    def _finished(self, ev: Event) -> Finished:
        if isinstance(ev, Succeeded):
            path = self._uploads / ev.output
            try:
                out = read_output(path.read_bytes())
            except (OSError, OutputError) as e:
                ev_failed = Failed(ev.task, ev.attempt, ev.result, ev.host, f"bad upload: {e}")
                return self._finished(ev_failed)
            finally:
                with contextlib.suppress(OSError):
                    path.unlink()
            return Finished(
                ev.task,
                ev.attempt,
                out.exit_code,
                out.outputs,
                out.stdout,
                out.stderr,
                out.seconds,
                out.error,
                ev.host,
            )
        stderr = f"[bjgrid] BOINC result {ev.result} on {ev.host}: {ev.reason}\n"
        if ev.stderr:
            stderr += ev.stderr + "\n"
        data = stderr.encode()
        return Finished(
            ev.task,
            ev.attempt,
            None,
            logs_archive(b"", data),
            b"",
            data,
            ev.elapsed,
            ev.reason,
            ev.host,
            ev.reissued,
            ev.requeued,
        )


def _tag(text: str, tag: str) -> str:
    m = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.S)
    return m.group(1).strip() if m else ""


def _upload_reply(status: int, message: str = "", size: int | None = None) -> bytes:
    parts = [f"<data_server_reply>\n<status>{status}</status>"]
    if message:
        parts.append(f"<message>{message}</message>")
    if size is not None:
        parts.append(f"<file_size>{size}</file_size>")
    parts.append("</data_server_reply>\n")
    return "\n".join(parts).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, project: Project, address: str, port: int, sock: socket.socket | None
    ) -> None:
        self.project = project
        super().__init__((address, port), _Handler, bind_and_activate=sock is None)
        if sock is not None:
            self.socket.close()
            self.socket = sock
            try:
                self.server_bind()
                self.server_activate()
            except BaseException:
                self.server_close()
                raise

    def server_bind(self) -> None:
        # Not HTTPServer.server_bind: its getfqdn() would ask the machine's DNS about our
        # (link-local) address.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def service_actions(self) -> None:
        self.project.check_deadlines()


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1: libcurl sends "Expect: 100-continue" before a large POST and would otherwise
    # wait a second for the "100 Continue" that only 1.1 handlers send.
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("project %s: %s", self.server.project.app_id, format % args)

    def _send(self, code: int, body: bytes, ctype: str = "text/xml", **headers: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _sub(self) -> str | None:
        base = self.server.project.base_path
        path = self.path.split("?", 1)[0]
        return path[len(base) :] if path.startswith(base) else None

    def do_GET(self) -> None:
        project = self.server.project
        sub = self._sub()
        if sub in ("", "index.html"):
            self._send(200, project.master_page(), "text/html")
            return
        if sub == "work":
            self._send(200, f"waiting {project.waiting}\n".encode(), "text/plain")
            return
        if sub is not None and sub.startswith("download/"):
            path = project.download_path(sub[len("download/") :])
            if path is not None:
                self._send_file(path)
                return
        self._send(404, b"not found\n", "text/plain")

    do_HEAD = do_GET

    def _send_file(self, path: Path) -> None:
        data = path.read_bytes()
        m = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
        if m and 0 < int(m.group(1)) <= len(data):
            start = int(m.group(1))
            rng = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self._send(206, data[start:], "application/octet-stream", Content_Range=rng)
        else:
            self._send(200, data, "application/octet-stream")

    def do_POST(self) -> None:
        project = self.server.project
        sub = self._sub()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if sub == "cgi":
            try:
                reply, events = project.scheduler_rpc(body)
            except RequestError as e:
                self._send(400, f"{e}\n".encode(), "text/plain")
                return
            self._send(200, reply)
            self.wfile.flush()
            project._deliver(events)
        elif sub == "file_upload_handler":
            self._send(200, project.upload(body))
        else:
            self._send(404, b"not found\n", "text/plain")


__all__ = ["APP_NAME", "Finished", "Project", "ProjectConfig", "ResultCallback", "logs_archive"]
