"""`--local N`: N volunteer processes on loopback, without mDNS, for a grid on one machine."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bonjourgrid.gridkey import GridKey, write_key
from bonjourgrid.paths import HOME_ENV

from .context import EXIT_GRID_FAILED, Abort, Ctx

_START_TIMEOUT = 20.0


@contextlib.contextmanager
def local_workers(ctx: Ctx, n: int, base: Path) -> Iterator[list[tuple[str, int]]]:
    """Start ``n`` workers under ``base``; point ``ctx`` at a private coordinator home and a
    throwaway key; yield their (address, port); stop them all on exit."""
    key_file = base / "grid.key"
    write_key(GridKey.generate(), key_file)
    ctx.key_file_option = str(key_file)
    ctx.paths = dataclasses.replace(ctx.paths, **_home(base / "coordinator"))
    procs: list[subprocess.Popen[bytes]] = []
    port_files = []
    try:
        for i in range(n):
            home = base / f"worker{i + 1}"
            port_file = home / "port"
            home.mkdir(parents=True)
            env = {**os.environ, HOME_ENV: str(home), "BJGRID_KEY_FILE": str(key_file)}
            argv = [
                sys.executable,
                "-m",
                "bonjourgrid.cli",
                "join",
                "--no-mdns",
                "--listen",
                "127.0.0.1",
                "--slots",
                "1",
                "--port-file",
                str(port_file),
                "--web-listen",
                "off",
            ]
            with open(home / "join.log", "wb") as log:
                procs.append(
                    subprocess.Popen(
                        argv,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        start_new_session=True,
                    )
                )
            port_files.append(port_file)
        peers = [("127.0.0.1", _wait_port(p, procs[i])) for i, p in enumerate(port_files)]
        yield peers
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _home(root: Path) -> dict[str, Path]:
    return {"config_dir": root / "config", "state_dir": root / "state", "log_dir": root / "log"}


def _wait_port(port_file: Path, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if port_file.exists():
            return int(port_file.read_text())
        if proc.poll() is not None:
            log = (port_file.parent / "join.log").read_text(errors="replace")[-2000:]
            raise Abort(f"a local worker failed to start:\n{log}", EXIT_GRID_FAILED)
        time.sleep(0.05)
    raise Abort("local workers did not start in time", EXIT_GRID_FAILED)
