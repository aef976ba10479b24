"""`bjgrid submit APP.json`: build a computing element for one application and run it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import hashlib
import json
import os
import secrets
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click

from bonjourgrid.app.bundle import build_bundle, sha256_hex, unpack_files
from bonjourgrid.app.ce_key import CEKey
from bonjourgrid.app.load import AppError, load_app, schema_text
from bonjourgrid.app.signing import SigningError, load_user_key, sign_app, user_key_path
from bonjourgrid.app.spec import BACKENDS, AppSpec
from bonjourgrid.daemon.local_messages import (
    CancelApp,
    FetchResults,
    Progress,
    Results,
    Submit,
    Submitted,
    Watch,
)

from . import backend_needs
from .context import (
    EXIT_BAD_INPUT,
    EXIT_GRID_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TASKS_FAILED,
    Abort,
    Ctx,
    pass_ctx,
    setup_logging,
)
from .daemon_client import DaemonSession, daemon_session
from .local_workers import local_workers
from .progress import ProgressView
from .proofs import request_proof

_HELP = f"""Run the application described by APP_JSON on the grid.

This machine becomes the coordinator of a computing element built for this one app: it
recruits idle volunteers, runs the tasks, brings the outputs home into --output
(DIR/<task-id>/ with the task's outputs, stdout and stderr, and DIR/results.json) and
releases the machines. The first stdout line is `app <ID>`.

\b
Exit status: 0 all tasks done; 1 some failed; 2 bad input; 3 the grid failed the app (no
suitable volunteers, coordinator lost, cancelled); 130 interrupted (the first Ctrl-C cancels
the app and releases its machines).

\b
The app.json format (JSON Schema):
{schema_text()}
"""


@click.command(help=_HELP)
@click.argument("app_json", type=click.Path(path_type=Path))
@click.option(
    "--workers", type=click.IntRange(min=1), help="Machines to recruit (overrides app.json)."
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    help="Computing-element backend (overrides app.json): embedded (the default task farm), "
    "condor (an HTCondor pool made for this app) or boinc (a BOINC project served for it). "
    "Only volunteers that advertise it are recruited.",
)
@click.option(
    "--replicas", type=click.IntRange(min=0), help="Coordinator replicas (overrides app.json)."
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where outputs go (default: ./<name>-results/).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Progress on stderr; after the `app <ID>` line, one JSON object on stdout at the end.",
)
@click.option(
    "--local",
    "local",
    type=click.IntRange(min=1),
    metavar="N",
    help="Run on N local worker processes (loopback, no mDNS) instead of the LAN.",
)
@click.option(
    "--detach", is_flag=True, help="Return once the app is accepted; fetch with `bjgrid results`."
)
@click.option("--fresh", is_flag=True, help="Start over even if this app.json is already running.")
@click.option(
    "--sign-key",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="BJGRID_USER_KEY",
    help="Sign the app with this user key (default: user.key from `bjgrid keygen --user`, "
    "if it exists; without one the app goes unsigned and only volunteers with no "
    "trusted_users run it).",
)
@pass_ctx
def submit(
    ctx: Ctx,
    app_json: Path,
    workers: int | None,
    backend: str | None,
    replicas: int | None,
    output: Path | None,
    as_json: bool,
    local: int | None,
    detach: bool,
    fresh: bool,
    sign_key: Path | None,
) -> None:
    setup_logging(ctx.verbose)
    if app_json.is_dir():  # docs/app-format.md: a folder holding app.json works too
        app_json = app_json / "app.json"
    try:
        spec, app_dir = load_app(app_json)
    except AppError as e:
        raise Abort(str(e), EXIT_BAD_INPUT) from None
    spec = dataclasses.replace(
        spec,
        workers=workers if workers is not None else spec.workers,
        backend=backend or spec.backend,
        replicas=replicas if replicas is not None else spec.replicas,
    )
    if local and spec.backend != "embedded":
        raise Abort(
            f"--local runs the embedded backend only (backend {spec.backend!r} needs volunteers "
            "on the LAN: `bjgrid join` on each, then submit without --local)",
            EXIT_BAD_INPUT,
        )
    needs = backend_needs.missing(spec.backend, backend_needs.probe(spec.backend))
    if needs:
        raise Abort(backend_needs.explain(spec.backend, needs), EXIT_BAD_INPUT)
    if detach and local:
        raise Abort(
            "--detach cannot be combined with --local (the local workers end with this command)"
        )
    try:
        bundle = build_bundle(spec, app_dir)
    except Exception as e:
        raise Abort(f"{app_json}: files: {e}", EXIT_BAD_INPUT) from None
    digest = hashlib.sha256(
        str(app_json.resolve()).encode() + b"\0" + app_json.read_bytes()
    ).hexdigest()
    out_dir = output or Path(f"{spec.name}-results")
    job = _Job(ctx, spec, bundle, digest, fresh, out_dir, as_json, detach)
    job.sign_key = sign_key
    # The app id and CE key are chosen here, before signing: the signature binds both.
    job.app_id, job.ce_key = secrets.token_hex(4), CEKey.generate()
    job.signature, job.signer = _signature(
        ctx, job.app_id, spec, bundle, job.ce_key.public, sign_key
    )
    try:
        with _local_grid(ctx, local) as peers:
            code = asyncio.run(job.run(peers))
    except KeyboardInterrupt:
        click.echo("bjgrid: interrupted", err=True)
        code = EXIT_INTERRUPTED
    sys.exit(code)


def _signature(
    ctx: Ctx, app_id: str, spec: AppSpec, bundle: bytes, ce_public: bytes, key_file: Path | None
) -> tuple[str, str]:
    """(encoded signature, signer) of app ``app_id`` — its spec, bundle and the CE key that
    may coordinate it — by the user's key; ("", "") with a one-line notice when the user has
    no key and named none."""
    path = key_file or user_key_path(ctx.paths.config_dir)
    if key_file is None and not path.exists():
        click.echo(
            "bjgrid: no signing key (`bjgrid keygen --user` makes one): app submitted unsigned; "
            "volunteers with trusted_users will refuse it",
            err=True,
        )
        return "", ""
    try:
        key = load_user_key(path)
    except SigningError as e:
        raise Abort(str(e), EXIT_BAD_INPUT) from None
    return sign_app(key, app_id, sha256_hex(bundle), spec, ce_public).encode(), key.user


@contextlib.contextmanager
def _local_grid(ctx: Ctx, n: int | None) -> Iterator[list[tuple[str, int]] | None]:
    """With --local N: N worker processes on loopback and a private coordinator home."""
    if not n:
        yield None
        return
    with (
        tempfile.TemporaryDirectory(prefix="bjgrid-local-") as tmp,
        local_workers(ctx, n, Path(tmp)) as peers,
    ):
        yield peers


class _Job:
    def __init__(
        self,
        ctx: Ctx,
        spec: AppSpec,
        bundle: bytes,
        digest: str,
        fresh: bool,
        out_dir: Path,
        as_json: bool,
        detach: bool,
    ) -> None:
        self.ctx, self.spec, self.bundle, self.digest = ctx, spec, bundle, digest
        self.fresh, self.out_dir, self.as_json, self.detach = fresh, out_dir, as_json, detach
        self.interrupts = 0
        self.sign_key: Path | None = None
        self.signature, self.signer = "", ""
        self.app_id, self.ce_key = "", CEKey.generate()

    async def run(self, peers: list[tuple[str, int]] | None) -> int:
        kw = {} if peers is None else {"mdns": False, "static_peers": peers}
        async with daemon_session(self.ctx, **kw) as session:  # type: ignore[arg-type]
            if session.private is not None and self.detach:
                raise Abort(
                    "--detach needs this machine's daemon running (`bjgrid join`): "
                    "without it the app would end with this command",
                    EXIT_BAD_INPUT,
                )
            reply = await session.call(
                Submit(
                    self.spec.to_json(),
                    self.bundle,
                    self.digest,
                    self.fresh,
                    getpass.getuser(),
                    self.app_id,
                    signature=self.signature,
                    signer=self.signer,
                    ce_secret=self.ce_key.hex(),
                ),
                timeout=60,
            )
            assert isinstance(reply, Submitted)
            app_id = reply.app
            # DESIGN.md contract: always the first stdout line; with --json the one JSON
            # object follows at the end (progress goes to stderr).
            click.echo(f"app {app_id}")
            sys.stdout.flush()
            if self.detach:
                return EXIT_OK
            last = await self._watch(session, app_id)
            return await self._collect(session, app_id, last)

    async def _watch(self, session: DaemonSession, app_id: str) -> Progress | None:
        loop = asyncio.get_running_loop()
        cancel_sent = asyncio.Event()

        def on_sigint() -> None:
            self.interrupts += 1
            if self.interrupts == 1:
                click.echo("\nbjgrid: cancelling the app (Ctrl-C again to stop waiting)", err=True)
                cancel_sent.set()
            else:
                raise KeyboardInterrupt

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        canceller = asyncio.create_task(self._cancel_when(session, app_id, cancel_sent))
        view = ProgressView(
            self.ctx.err, enabled=not self.as_json and sys.stderr.isatty(), plain=self.as_json
        )
        last: Progress | None = None
        ch = await session.open()
        try:
            await ch.send(Watch(app_id))
            with view:
                while True:
                    msg = await ch.recv()
                    if not isinstance(msg, Progress):
                        break
                    quiet = view.enabled or view.plain  # else no bar: say a new wait once
                    if msg.waiting and not quiet and (last is None or last.waiting != msg.waiting):
                        click.echo(f"bjgrid: app {app_id} waiting: {msg.waiting}", err=True)
                    last = msg
                    view.update(msg)
                    if msg.ended:
                        break
        finally:
            await ch.close()
            canceller.cancel()
            loop.remove_signal_handler(signal.SIGINT)
        return last

    def _proof(self, session: DaemonSession, action: str, app_id: str) -> str:
        """After a takeover the app's holder is another machine: prove it is the submitter."""
        return request_proof(self.ctx, session, action, app_id, self.sign_key)

    async def _cancel_when(self, session: DaemonSession, app_id: str, ev: asyncio.Event) -> None:
        await ev.wait()
        with contextlib.suppress(Exception):
            proof = self._proof(session, "cancel", app_id)
            await session.call(CancelApp(app_id, proof), timeout=10)

    async def _collect(self, session: DaemonSession, app_id: str, last: Progress | None) -> int:
        following = False
        while True:
            proof = self._proof(session, "results", app_id)  # one per request (nonce)
            reply = await session.call(FetchResults(app_id, proof), timeout=300)
            assert isinstance(reply, Results)
            if reply.complete or self.interrupts:
                break
            if not following:  # a takeover moved the app: follow it to its new coordinator
                click.echo(
                    f"bjgrid: app {app_id} is coordinated by another machine now; following it",
                    err=True,
                )
                following = True
            await asyncio.sleep(1.0)
        write_results(reply, self.out_dir)
        failed = [t for t in task_rows(reply.results) if t.get("state") != "done"]
        if self.interrupts:
            code = EXIT_INTERRUPTED
        elif reply.outcome == "finished":
            code = EXIT_TASKS_FAILED if failed else EXIT_OK
        else:
            code = EXIT_GRID_FAILED
        reason = last.reason if last else ""
        if self.as_json:
            doc = {
                "app": reply.app,
                "name": reply.name,
                "outcome": reply.outcome,
                "reason": reason,
                "output": str(self.out_dir),
                "exit_status": code,
                **{"results": reply.results},
            }
            click.echo(json.dumps(doc, indent=2))
        else:
            n = len(task_rows(reply.results))
            summary = f"{reply.outcome}: {n - len(failed)}/{n} tasks done"
            if failed:
                names = ", ".join(str(t["id"]) for t in failed[:5])
                more = ", ..." if len(failed) > 5 else ""
                summary += f", {len(failed)} failed ({names}{more})"
            if reason:
                summary += f" — {reason}"
            click.echo(f"{summary}; outputs in {self.out_dir}/", err=True)
        return code


def task_rows(results: dict[str, object]) -> list[dict[str, object]]:
    """The task entries of a results.json document."""
    tasks = results.get("tasks")
    return [t for t in tasks if isinstance(t, dict)] if isinstance(tasks, list) else []


def write_results(reply: Results, out_dir: Path) -> None:
    """DIR/<task-id>/ for each task and DIR/results.json, written as the submitting user."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if reply.outputs:
        unpack_files(reply.outputs, out_dir)
    tmp = out_dir / ".results.json.tmp"
    tmp.write_text(json.dumps(reply.results, indent=2) + "\n")
    os.replace(tmp, out_dir / "results.json")
