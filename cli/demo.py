"""`bjgrid demo`: the bundled example app, end to end, on this one machine.

A private virtual LAN of volunteer hosts (network namespaces on a bridge of their own, with
link-local addresses and real mDNS) when the kernel allows it; local worker processes on
loopback otherwise. Never the real network.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
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
@pass_ctx
def demo(ctx: Ctx, hosts: int, output: Path, force_local: bool) -> None:
    """Run the bundled example (12 squares and their sum) on a demo grid on this machine."""
    from bonjourgrid.testbed import available

    ok, why = available()
    output = output.resolve()
    with tempfile.TemporaryDirectory(prefix="bjgrid-demo-") as tmp:
        app = Path(tmp) / "squares"
        shutil.copytree(example_dir(), app)
        if ok and not force_local:
            code = _lan_demo(hosts, app / "app.json", output, Path(tmp))
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


def _lan_demo(n: int, app_json: Path, output: Path, tmp: Path) -> int:
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
        proc = grid.popen_cli(user, "submit", str(app_json), "--output", str(output))
        code = proc.wait()
        status = grid.cli(user, "status", timeout=30)
        sys.stderr.write(status.stdout.decode(errors="replace"))
        return code
