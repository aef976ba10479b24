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
import time
from importlib import resources
from pathlib import Path

import click

from bonjourgrid.gridkey import GridKey, write_key

from .context import EXIT_GRID_FAILED, Abort, Ctx, pass_ctx


def example_dir() -> Path:
    return Path(str(resources.files("bonjourgrid") / "examples" / "squares"))


@click.command()
@click.option("--hosts", type=click.IntRange(1, 16), default=4, show_default=True,
              help="Volunteer hosts in the demo LAN.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=Path("demo-results"), show_default=True)
@click.option("--local", "force_local", is_flag=True,
              help="Use local worker processes even if a virtual LAN could be made.")
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
                click.echo(f"bjgrid demo: no virtual LAN here ({why}); using local workers", err=True)
            argv = [sys.executable, "-m", "bonjourgrid.cli", "submit", "--local", str(hosts),
                    str(app / "app.json"), "--output", str(output)]
            code = subprocess.call(argv)
    if code == 0:
        total = (output / "sum" / "total.txt").read_text().strip()
        click.echo(f"demo done: sum of squares 1..12 = {total} (expected 650); see {output}/")
    sys.exit(code)


def _lan_demo(n: int, app_json: Path, output: Path, tmp: Path) -> int:
    from bonjourgrid.testbed import VirtualLan

    key_file = tmp / "grid.key"
    write_key(GridKey.generate(), key_file)
    extra = {"BJGRID_KEY_FILE": str(key_file), "BJGRID_PROFILE": "fast"}
    cli = [sys.executable, "-m", "bonjourgrid.cli"]
    with VirtualLan(n + 1, base_dir=tmp / "lan", name="demo") as lan:
        *volunteers, user = lan.hosts
        click.echo(f"demo LAN: {n} volunteers + 1 submitting host on a private bridge "
                   f"({', '.join(h.address for h in lan.hosts)})", err=True)
        for h in volunteers:
            log = open(h.home / "join.log", "wb")
            h.popen([*cli, "join", "--slots", "1"], env=h.env(extra), stdout=log, stderr=log)
            log.close()
        _wait_idle(user, n, cli, h.env(extra) if volunteers else {})
        proc = user.popen([*cli, "submit", str(app_json), "--output", str(output)],
                          env=user.env(extra), stdout=None, stderr=None)
        code = proc.wait()
        status = user.run([*cli, "status"], timeout=20, env=user.env(extra))
        sys.stderr.write(status.stdout.decode(errors="replace"))
        return code


def _wait_idle(user: object, n: int, cli: list[str], env: dict[str, str]) -> None:
    import json

    deadline = time.monotonic() + 30
    seen = 0
    while time.monotonic() < deadline:
        r = user.run([*cli, "status", "--json", "--timeout", "2"], timeout=20,  # type: ignore[attr-defined]
                     env={**env, "BJGRID_HOME": str(user.home)})  # type: ignore[attr-defined]
        if r.returncode == 0:
            rows = json.loads(r.stdout)
            seen = sum(1 for m in rows if m["state"] == "idle" and m["reachable"])
            if seen >= n:
                return
        time.sleep(0.3)
    raise Abort(f"only {seen} of {n} demo volunteers came up", EXIT_GRID_FAILED)


