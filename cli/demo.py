"""`bjgrid demo`: the bundled example app, end to end, on this one machine.

A private virtual LAN of volunteer hosts (network namespaces on a bridge of their own, with
link-local addresses and real mDNS) when the kernel allows it; local worker processes on
loopback otherwise. Never the real network. ``--web``: the demo grid's live web view, relayed
to this machine's loopback (cli/demo_web.py).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import click

from .context import EXIT_GRID_FAILED, Abort, Ctx, pass_ctx


def example_dir() -> Path:
    return Path(str(resources.files("bonjourgrid") / "examples" / "squares"))


@click.command()
@click.option(
    "--hosts",
    type=click.IntRange(1, 16),
    default=4,
    show_default=True,
    help="Volunteer hosts in the demo LAN.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-results"),
    show_default=True,
)
@click.option(
    "--local",
    "force_local",
    is_flag=True,
    help="Use local worker processes even if a virtual LAN could be made.",
)
@click.option(
    "--web",
    is_flag=True,
    help="Watch it in a browser: print the demo grid's web view URL (also given by "
    "`bjgrid status --web`); the view stays open after the app, until Ctrl-C.",
)
@pass_ctx
def demo(ctx: Ctx, hosts: int, output: Path, force_local: bool, web: bool) -> None:
    """Run the bundled example (12 squares and their sum) on a demo grid on this machine."""
    from bonjourgrid.testbed import available

    ok, why = available()
    output = output.resolve()
    with tempfile.TemporaryDirectory(prefix="bjgrid-demo-") as tmp:
        app = Path(tmp) / "squares"
        shutil.copytree(example_dir(), app)
        if web and (force_local or not ok):
            raise Abort(
                f"--web needs the demo's virtual LAN ({'--local given' if ok else why})",
                EXIT_GRID_FAILED,
            )
        if ok and not force_local:
            state = ctx.paths.state_dir if web else None
            code = _lan_demo(hosts, app / "app.json", output, Path(tmp), state)
        else:
            if not force_local:
                click.echo(
                    f"bjgrid demo: no virtual LAN here ({why}); using local workers", err=True
                )
            argv = [
                sys.executable,
                "-m",
                "bonjourgrid.cli",
                "submit",
                "--local",
                str(hosts),
                str(app / "app.json"),
                "--output",
                str(output),
            ]
            code = subprocess.call(argv)
    if code == 0:
        total = (output / "sum" / "total.txt").read_text().strip()
        click.echo(f"demo done: sum of squares 1..12 = {total} (expected 650); see {output}/")
    sys.exit(code)


def _lan_demo(n: int, app_json: Path, output: Path, tmp: Path, web_state: Path | None) -> int:
    """The demo on a virtual LAN; with ``web_state`` (the state dir for demo-web.url) the
    submitting host serves the web view, relayed here (cli/demo_web.py)."""
    from bonjourgrid.testbed import VirtualLan
    from bonjourgrid.testbed.grid import Grid

    with VirtualLan(n + 1, base_dir=tmp / "lan", name="demo") as lan:
        *volunteers, user = lan.hosts
        addresses = ", ".join(h.address for h in lan.hosts)
        click.echo(f"demo LAN: {n} volunteers + 1 submitting host ({addresses})", err=True)
        grid = Grid(lan)
        try:
            grid.join_all(volunteers, "--slots", "1")
            grid.wait_idle(user, volunteers)
        except (RuntimeError, TimeoutError) as e:
            raise Abort(f"the demo grid did not come up: {e}", EXIT_GRID_FAILED) from None
        with contextlib.ExitStack() as stack:
            if web_state is not None:
                from .demo_web import demo_web_view

                url = stack.enter_context(demo_web_view(grid, user, tmp, web_state))
                click.echo(f"demo web view: {url}", err=True)
            proc = grid.popen_cli(user, "submit", str(app_json), "--output", str(output))
            code = proc.wait()
            status = grid.cli(user, "status", timeout=30)
            sys.stderr.write(status.stdout.decode(errors="replace"))
            if web_state is not None:
                click.echo("demo web view still open; Ctrl-C ends the demo", err=True)
                _wait_for_interrupt()
        return code


def _wait_for_interrupt() -> None:
    """Until Ctrl-C (or SIGTERM: the LAN is still cleaned up)."""

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
