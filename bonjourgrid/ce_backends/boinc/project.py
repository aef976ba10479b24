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

Trust: a scheduler request is served only with the authenticator of an account made here
(unknown ones get a reply with "unknown account" and no work, logged rate-limited); a
client's reports count only for results issued to it. Uploads are accepted only as
``uploads.py`` says (a live result's output, its signature, its ``max_nbytes``, once), and
every connection is bounded in size, time and number as ``http_server.py`` says.

Threading contract: the server runs in its own thread (``ThreadingHTTPServer``, one thread per
connection); the issuer is guarded by one lock; ``on_result`` is called from a server thread,
one call at a time, after the reply that caused it was sent; it must not block for long
(hand over to an event loop with ``call_soon_threadsafe``). Deadlines are checked every
``poll`` seconds by the server loop.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import logging
import secrets
import socket
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bonjourgrid.ce_backends.boinc.http_server import HttpLimits, ProjectServer
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
    build_reply,
    parse_request,
)
from bonjourgrid.ce_backends.boinc.signing import CodeSignKey
from bonjourgrid.ce_backends.boinc.uploads import UploadStore
from bonjourgrid.ce_backends.boinc.wrapper import (
    JOB_OPEN_NAME,
    OutputError,
    StoredFile,
    app_files,
    job_file,
    read_output,
)
from bonjourgrid.control.admission import RateLimitedLog

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
    http: HttpLimits = field(default_factory=HttpLimits)


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
        self._downloads.mkdir(parents=True, exist_ok=True)
        self.uploads = UploadStore(root / "upload", self._max_nbytes_of)
        self._refusals = RateLimitedLog(log)
        self._refusals_lock = threading.Lock()
        release_files = files if files is not None else app_files(key, bundle)
        for stored, _ in release_files:
            self._store(stored)
        self._release = Release(
            APP_NAME,
            VERSION_NUM,
            tuple((s.ref, open_name) for s, open_name in release_files),
            flops=self.config.issuer.flops,
        )
        self._server = ProjectServer(self, address, port, listen_socket, self.config.http)
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
        self.deliver(events)

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

    @property
    def max_upload_bytes(self) -> int:
        return self.config.issuer.max_output_bytes

    @property
    def open_connections(self) -> int:
        """Connections the server holds open now (for tests)."""
        return self._server.open_connections

    def _max_nbytes_of(self, output: str) -> int | None:
        with self._lock:
            known = self._issuer.result_of(output) is not None
        return self.config.issuer.max_output_bytes if known else None

    def refused(self, peer: str, why: str) -> None:
        """Log a refused request, at most a few lines per window (a flood fills no disk)."""
        with self._refusals_lock:
            self._refusals.log(time.monotonic(), logging.WARNING, "project %s: refused %s: %s",
                               self.app_id, peer, why)  # fmt: skip

    def _account(self, authenticator: str) -> str | None:
        """The node of the account with this authenticator ('' for the project's own)."""
        found = None
        with self._lock:
            for auth, node in self._accounts.items():  # every one compared: no timing hint
                if hmac.compare_digest(auth.encode(), authenticator.encode()):
                    found = node
        return found

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
        node = self._account(req.authenticator)
        if node is None:
            self.refused(req.domain_name or "?", "a scheduler request with an unknown account")
            reply = replace(base, messages=("unknown account",), request_delay=60.0)
            return build_reply(reply), []
        if node:
            req = replace(req, domain_name=node)
        with self._lock:
            self.rpcs += 1
            d = self._issuer.handle(req, self._clock())
        reply = replace(
            base,
            hostid=d.hostid,
            release=self._release,
            assignments=tuple(
                replace(a, upload_signature=self.uploads.sign(a.output, a.max_output_bytes))
                for a in d.assignments
            ),
            acks=d.acks,
            aborts=d.aborts,
        )
        return build_reply(reply), list(d.events)

    def check_deadlines(self) -> None:
        with self._lock:
            events = self._issuer.expire(self._clock())
        self.deliver(events)

    def deliver(self, events: list[Event] | tuple[Event, ...]) -> None:
        for ev in events:
            finished = self._finished(ev)
            with self._callback_lock:
                try:
                    self._on_result(finished)
                except Exception:
                    log.exception("project %s: result callback failed", self.app_id)

    def _finished(self, ev: Event) -> Finished:
        if isinstance(ev, Succeeded):
            try:
                out = read_output(self.uploads.path(ev.output).read_bytes())
            except (OSError, ValueError, OutputError) as e:
                ev_failed = Failed(ev.task, ev.attempt, ev.result, ev.host, f"bad upload: {e}")
                return self._finished(ev_failed)
            finally:
                self.uploads.discard(ev.output)
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
        with contextlib.suppress(ValueError):
            self.uploads.discard(f"{ev.result}_out")
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


__all__ = ["APP_NAME", "Finished", "Project", "ProjectConfig", "ResultCallback", "logs_archive"]
