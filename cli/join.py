"""`bjgrid join`: make this desktop a volunteer (the host's daemon, in the foreground)."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from pathlib import Path

import click

from bonjourgrid.config import VolunteerFileError, read_volunteer_file
from bonjourgrid.daemon.hostinfo import detect, load_node_key
from bonjourgrid.daemon.lock import DaemonRunning
from bonjourgrid.daemon.node import NodeDaemon
from bonjourgrid.discovery import DiscoveryError
from bonjourgrid.policy.volunteer import OWNER_ACTIVITY_FILE, settings_from

from .context import EXIT_GRID_FAILED, Abort, Ctx, pass_ctx, setup_logging
from .web_option import serving, web_listen_option


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
    "--listen", default="::", show_default=True, hidden=True, help="Control port bind address."
)
@click.option("--port", type=int, default=0, help="Control port (default: any free port).")
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    hidden=True,
    help="Write the control port here once listening.",
)
@click.option(
    "--owner-activity",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="BJGRID_OWNER_ACTIVITY",
    help="Read the owner's presence from this file (`busy` or `idle`) instead of the "
    "machine's load and keyboard (labs, tests, a manual switch).",
)
@click.option(
    "--max-cpus",
    type=click.IntRange(min=1),
    help="Use at most this many CPUs for tasks (caps --slots).",
)
@click.option(
    "--max-memory",
    "max_memory",
    type=click.IntRange(min=1),
    metavar="MB",
    help="Memory offered to tasks, in MB: advertised, and the cap of a task that declares none.",
)
@click.option(
    "--trust",
    "trust",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Run only apps signed by this user's key (a user.pub file; repeatable; adds to "
    "trusted_users in volunteer.toml).",
)
@click.option(
    "--allow-unisolated",
    is_flag=True,
    envvar="BJGRID_ALLOW_UNISOLATED",
    help="Run tasks even where they cannot be isolated (not root and no working bubblewrap): "
    "they can then read your files and use the network. Without it such a machine refuses "
    "tasks (docs/sandbox.md).",
)
@click.option(
    "--code",
    "pair_code",
    metavar="CODE",
    help="Receive the grid key from a machine running `bjgrid invite` first (its code).",
)
@web_listen_option
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
    owner_activity: Path | None,
    max_cpus: int | None,
    max_memory: int | None,
    trust: tuple[Path, ...],
    allow_unisolated: bool,
    web_listen: str,
    pair_code: str | None,
) -> None:
    """Volunteer this machine to the grid until SIGINT/SIGTERM.

    The machine advertises itself over mDNS as idle, serves one application at a time when a
    coordinator recruits it, and runs tasks at the lowest CPU priority. On SIGINT/SIGTERM it
    withdraws its records with mDNS goodbyes before it exits. Other bjgrid commands on this
    machine (status, submit, ...) go through this daemon.

    The owner comes first (docs/owner-policy.md): when they use the machine its tasks are
    stopped at once, continued when they leave, and given back to their coordinator if the
    owner stays too long. Settings: [policy], [sandbox], trusted_users and owner_activity in
    volunteer.toml in the config dir; the options here win.
    """
    setup_logging(max(ctx.verbose, 1), log_file=ctx.paths.log_dir / "daemon.log")
    if pair_code is not None:
        from .invite import receive_key, store_key

        if ctx.key_file.exists():
            raise Abort(f"--code: a grid key exists already at {ctx.key_file}")
        paired = receive_key(pair_code, interfaces=interfaces)
        store_key(paired, ctx.key_file)
        click.echo(f"grid {paired.grid_id}: key received, written to {ctx.key_file}")
    key = ctx.key()
    paths = ctx.paths.ensure()
    if owner_activity is None and no_mdns:
        # --local workers are the submitting user's own processes: no owner to watch.
        owner_activity = paths.state_dir / OWNER_ACTIVITY_FILE
    try:
        settings = settings_from(
            read_volunteer_file(paths.config_file),
            fast=ctx.config.profile == "fast",
            state_dir=paths.state_dir,
            owner_activity=owner_activity,
            max_cpus=max_cpus,
            max_memory_mb=max_memory,
            trust=trust,
        )
    except VolunteerFileError as e:
        raise Abort(str(e)) from None
    if allow_unisolated or no_mdns:  # --local workers run the submitting user's own code
        sandbox = dataclasses.replace(settings.sandbox, allow_unisolated=True)
        settings = dataclasses.replace(settings, sandbox=sandbox)
    host = detect(load_node_key(paths.state_dir), slots=slots)
    host = dataclasses.replace(
        host, slots=settings.slots(host.slots), mem_mb=settings.memory_mb(host.mem_mb)
    )
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
        settings=settings,
    )
    if workdir is not None:
        daemon.agent.work_dir = workdir
    try:
        asyncio.run(_serve(daemon, port_file, web_listen))
    except DaemonRunning as e:
        raise Abort(str(e), EXIT_GRID_FAILED) from None
    except DiscoveryError as e:
        raise Abort(f"discovery: {e}", EXIT_GRID_FAILED) from None


async def _serve(daemon: NodeDaemon, port_file: Path | None, web_listen: str) -> None:
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
        async with serving(daemon, web_listen):
            await stop.wait()
    finally:
        await daemon.stop()
