"""`bjgrid serve`: this host's daemon without volunteering — it coordinates the apps submitted
here and offers no slots. `submit --detach` starts one in the background when no daemon
runs (a machine that does not `join` can still leave an app running and come back with
`bjgrid watch`). It exits once it has coordinated nothing for ``--linger`` seconds; the
journal keeps the apps' results on disk for the next daemon to serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from bonjourgrid.daemon.hostinfo import detect, load_node_key
from bonjourgrid.daemon.lock import DaemonRunning
from bonjourgrid.daemon.node import NodeDaemon
from bonjourgrid.discovery import DiscoveryError

from .context import EXIT_GRID_FAILED, Abort, Ctx, pass_ctx, setup_logging
from .daemon_client import daemon_answers
from .web_option import serving, web_listen_option

LINGER = 600.0
"""Default seconds a background daemon stays once it coordinates nothing (a `watch` or
`results` soon after the app ends is answered by it, not by a new private daemon)."""
_START_TIMEOUT = 30.0


@click.command(hidden=True)
@click.option(
    "--linger",
    type=click.FloatRange(min=0),
    default=LINGER,
    show_default=True,
    help="Exit once no app has been coordinated here for this many seconds (0: never).",
)
@web_listen_option
@pass_ctx
def serve(ctx: Ctx, linger: float, web_listen: str) -> None:
    """Run this host's daemon without volunteering (coordinates only; offers no slots)."""
    setup_logging(max(ctx.verbose, 1), log_file=ctx.paths.log_dir / "daemon.log")
    key = ctx.key()
    paths = ctx.paths.ensure()
    host = detect(load_node_key(paths.state_dir))
    daemon = NodeDaemon(
        paths=paths, config=ctx.config, key=key, host=host, volunteer=False, mdns=True
    )
    try:
        asyncio.run(_serve(daemon, linger, web_listen))
    except DaemonRunning as e:
        raise Abort(str(e), EXIT_GRID_FAILED) from None
    except DiscoveryError as e:
        raise Abort(f"discovery: {e}", EXIT_GRID_FAILED) from None


async def _serve(daemon: NodeDaemon, linger: float, web_listen: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await daemon.start()
    idle_since = time.monotonic()
    try:
        async with serving(daemon, web_listen):
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                if any(a.role.coordinating for a in daemon.apps.values()):
                    idle_since = time.monotonic()
                elif linger and time.monotonic() - idle_since > linger:
                    break
    finally:
        await daemon.stop()


def start_background(ctx: Ctx) -> None:
    """Start `bjgrid serve` detached from this terminal (its own session, output to the log
    dir) and wait until its socket answers; Abort (exit 3) with its log when it does not."""
    paths = ctx.paths.ensure()
    log = paths.log_dir / "serve.log"
    env = {**os.environ, "BJGRID_KEY_FILE": str(ctx.key_file)}
    argv = [sys.executable, "-m", "bonjourgrid.cli", "serve"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            start_new_session=True, cwd="/",
        )  # fmt: skip
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if daemon_answers(ctx):
            click.echo(
                f"bjgrid: started a background daemon (pid {proc.pid}; coordinates only, "
                f"offers no slots; log {log})",
                err=True,
            )
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = Path(log).read_text(errors="replace")[-1500:]
    raise Abort(f"the background daemon did not start:\n{tail}", EXIT_GRID_FAILED)
