"""`bjgrid join`: make this desktop a volunteer (the host's daemon, in the foreground)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from bonjourgrid.daemon.hostinfo import detect, load_node_id
from bonjourgrid.daemon.lock import DaemonRunning
from bonjourgrid.daemon.node import NodeDaemon
from bonjourgrid.discovery import DiscoveryError

from .context import EXIT_GRID_FAILED, Abort, Ctx, pass_ctx, setup_logging


@click.command()
@click.option(
    "--slots",
    type=click.IntRange(min=1),
    envvar="BJGRID_SLOTS",
    help="CPUs' worth of tasks run at once (default: this machine's CPUs).",
)
@click.option(
    "--interface",
    "-i",
    "interfaces",
    multiple=True,
    envvar="BJGRID_INTERFACE",
    help="Interface name or IPv4 address to use (repeatable; default: every "
    "multicast-capable interface).",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where tasks run (default: the state dir).",
)
@click.option(
    "--no-mdns",
    is_flag=True,
    hidden=True,
    help="No discovery: coordinators reach this worker by address (--local mode).",
)
@click.option(
    "--listen", default="0.0.0.0", show_default=True, hidden=True, help="Control port bind address."
)
@click.option("--port", type=int, default=0, help="Control port (default: any free port).")
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    hidden=True,
    help="Write the control port here once listening.",
)
@pass_ctx
def join(
    ctx: Ctx,
    slots: int | None,
    interfaces: tuple[str, ...],
    workdir: Path | None,
    no_mdns: bool,
    listen: str,
    port: int,
    port_file: Path | None,
) -> None:
    """Volunteer this machine to the grid until SIGINT/SIGTERM.

    The machine advertises itself over mDNS as idle, serves one application at a time when a
    coordinator recruits it, and runs tasks at the lowest CPU priority. On SIGINT/SIGTERM it
    withdraws its records with mDNS goodbyes before it exits. Other bjgrid commands on this
    machine (status, submit, ...) go through this daemon.
    """
    setup_logging(max(ctx.verbose, 1), log_file=ctx.paths.log_dir / "daemon.log")
    key = ctx.key()
    paths = ctx.paths.ensure()
    host = detect(load_node_id(paths.node_id_file), slots=slots)
    daemon = NodeDaemon(
        paths=paths,
        config=ctx.config,
        key=key,
        host=host,
        volunteer=True,
        mdns=not no_mdns,
        interfaces=interfaces,
        listen=listen,
        port=port,
    )
    if workdir is not None:
        daemon.agent.work_dir = workdir
    try:
        asyncio.run(_serve(daemon, port_file))
    except DaemonRunning as e:
        raise Abort(str(e), EXIT_GRID_FAILED) from None
    except DiscoveryError as e:
        raise Abort(f"discovery: {e}", EXIT_GRID_FAILED) from None


async def _serve(daemon: NodeDaemon, port_file: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await daemon.start()
    if port_file is not None:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(f"{daemon.port}\n")
        tmp.rename(port_file)
    try:
        await stop.wait()
    finally:
        await daemon.stop()
