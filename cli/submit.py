"""`bjgrid submit APP.json`: build a computing element for one application and run it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import hashlib
import secrets
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import click

from bonjourgrid.app.bundle import build_bundle, sha256_hex
from bonjourgrid.app.ce_key import CEKey
from bonjourgrid.app.fields import AppError
from bonjourgrid.app.load import load_app
from bonjourgrid.app.signing import SigningError, load_user_key, sign_app, user_key_path
from bonjourgrid.app.spec import BACKENDS, AppSpec
from bonjourgrid.daemon.local_messages import Submit, Submitted

from . import backend_needs, outcome
from . import dry_run as dry_run_mod
from .app_follow import Follower, write_results
from .context import (
    EXIT_BAD_INPUT,
    EXIT_GRID_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Abort,
    Ctx,
    pass_ctx,
    setup_logging,
)
from .daemon_client import daemon_answers, daemon_session
from .local_workers import local_workers
from .outcome import task_rows
from .serve import start_background

_HELP = f"""Run the application described by APP_JSON (or a folder holding app.json).

This machine becomes the coordinator of a computing element built for this one app: it
recruits idle volunteers (waiting for them, as HTCondor jobs wait, and saying why), runs the
tasks, brings the outputs home into --output (DIR/<task-id>/ and DIR/results.json) and
releases the machines. The first stdout line is `app <ID>`; with --json stdout is exactly
one JSON object. The app.json format: docs/app-format.md; its JSON Schema: `bjgrid schema`.

\b
Exit status (shared with `results` and `watch`):
{outcome.TABLE}
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
    "--wait-timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Fail the app (exit 3) once it has had no volunteer this long (overrides app.json; "
    "default: wait as long as it takes, saying why).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Expand the app and list, per task, how many volunteers seen fit it; recruit nothing.",
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
    help="Stdout is exactly one JSON object, at the end (`app` is the id); progress and the "
    "`app <ID>` line go to stderr.",
)
@click.option(
    "--local",
    "local",
    type=click.IntRange(min=1),
    metavar="N",
    help="Run on N local worker processes (loopback, no mDNS) instead of the LAN.",
)
@click.option(
    "--detach",
    is_flag=True,
    help="Return once the app is accepted (a background daemon coordinates it if this machine "
    "runs none); follow it with `bjgrid watch APP_ID`, fetch with `bjgrid results`.",
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
    wait_timeout: float | None,
    dry_run: bool,
    output: Path | None,
    as_json: bool,
    local: int | None,
    detach: bool,
    fresh: bool,
    sign_key: Path | None,
) -> None:
    setup_logging(ctx.verbose)
    chosen: list[_Job] = []  # the app id, once chosen, goes into a --json error object
    with outcome.json_errors(as_json, lambda: chosen[0].app_id if chosen else ""):
        overrides = {"workers": workers, "backend": backend, "replicas": replicas,
                     "wait_timeout": wait_timeout}  # fmt: skip
        if dry_run:
            spec = load_with(app_json, overrides)[0]
            sys.exit(dry_run_mod.run(ctx, spec, as_json=as_json, local=local, timeout=3.0))
        job = _prepare(ctx, app_json, overrides, output, as_json, local, detach, fresh, sign_key)
        chosen.append(job)
        if detach and not daemon_answers(ctx):
            # No daemon here (this machine does not volunteer): one that coordinates only,
            # in the background, so the app outlives this command.
            start_background(ctx)
        try:
            with _local_grid(ctx, local) as peers:
                code = asyncio.run(job.run(peers))
        except KeyboardInterrupt:
            click.echo("bjgrid: interrupted", err=True)
            code = EXIT_INTERRUPTED
    sys.exit(code)


def load_with(app_json: Path, overrides: Mapping[str, object]) -> tuple[AppSpec, Path, Path]:
    """(spec with the command line's overrides, app folder, the app.json file); bad input
    exits 2. A folder stands for the app.json inside it."""
    if app_json.is_dir():  # docs/app-format.md: a folder holding app.json works too
        app_json = app_json / "app.json"
    try:
        spec, app_dir = load_app(app_json)
    except AppError as e:
        raise Abort(str(e), EXIT_BAD_INPUT) from None
    given = {k: v for k, v in overrides.items() if v is not None}
    spec = dataclasses.replace(spec, **given)  # type: ignore[arg-type]
    try:  # the overrides meet app.json's own rules (a NaN --wait-timeout does not)
        AppSpec.from_json(spec.to_json(), source="the command line")
    except AppError as e:
        raise Abort(str(e), EXIT_BAD_INPUT) from None
    return spec, app_dir, app_json


def _prepare(
    ctx: Ctx,
    app_json: Path,
    overrides: Mapping[str, object],
    output: Path | None,
    as_json: bool,
    local: int | None,
    detach: bool,
    fresh: bool,
    sign_key: Path | None,
) -> _Job:
    """Everything checked and signed before any daemon is asked (bad input exits 2 here)."""
    spec, app_dir, app_json = load_with(app_json, overrides)
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
    return job


def _signature(
    ctx: Ctx, app_id: str, spec: AppSpec, bundle: bytes, ce_public: bytes, key_file: Path | None
) -> tuple[str, str]:
    """(encoded signature, signer) of app ``app_id`` — its spec, bundle and the CE key that
    may coordinate it — by the user's key; ("", "") with a one-line notice when the user has
    no key and named none."""
    path = key_file or user_key_path(ctx.paths.config_dir)
    if key_file is None and not path.exists():
        click.echo(
            # Two lines that fit 80 columns (a wrapped word reads badly).
            "bjgrid: app submitted unsigned: volunteers with trusted_users will refuse it\n"
            "bjgrid: no signing key; `bjgrid keygen --user` makes one",
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
        self.sign_key: Path | None = None
        self.signature, self.signer = "", ""
        self.app_id, self.ce_key = "", CEKey.generate()

    async def run(self, peers: list[tuple[str, int]] | None) -> int:
        kw = {} if peers is None else {"mdns": False, "static_peers": peers}
        async with daemon_session(self.ctx, **kw) as session:  # type: ignore[arg-type]
            if session.private is not None and self.detach:  # it stopped meanwhile
                raise Abort("--detach: this machine's daemon went away", EXIT_GRID_FAILED)
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
            app_id = self.app_id = reply.app
            # DESIGN.md contract: `app <ID>` is the first stdout line; with --json stdout is
            # exactly one JSON object (the id inside it) and the line goes to stderr.
            click.echo(f"app {app_id}", err=self.as_json)
            sys.stdout.flush()
            if self.detach:
                if self.as_json:
                    outcome.print_json(
                        outcome.document(
                            app=app_id,
                            name=self.spec.name,
                            outcome="",
                            reason="",
                            output=None,
                            status=EXIT_OK,
                            results=None,
                            detached=True,
                            resumed=reply.resumed,
                        )
                    )
                return EXIT_OK
            follower = Follower(
                self.ctx, app_id, out_dir=self.out_dir, as_json=self.as_json, sign_key=self.sign_key
            )
            return await follower.run(session)


# Kept importable from here (older callers); they live in cli/outcome.py and app_follow.py.
__all__ = ["submit", "task_rows", "write_results"]
