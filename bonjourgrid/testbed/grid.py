"""A bjgrid grid on a virtual LAN: one key, `bjgrid join` on chosen hosts, CLI runs anywhere.

Used by the integration tests, the benchmarks and ``bjgrid demo``. Every process runs inside
its host's namespaces (real mDNS on the LAN's bridge, never this machine's interfaces).

Starting many daemons on a loaded 2-core machine is slow (issue 16): waits scale with the
machine's load (:func:`patience`), and a daemon that dies at start is started again once, its
log printed, before the start counts as failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from bonjourgrid.gridkey import GridKey, write_key

from .run_as import RunAs
from .vlan import Host, VirtualLan

CLI = (sys.executable, "-m", "bonjourgrid.cli")
MAX_PATIENCE = 600.0
"""No load-scaled wait goes beyond this (a machine that slow is broken, not loaded)."""


def patience(base: float, *, starting: int = 1) -> float:
    """``base`` seconds scaled by this machine's load: x (1-minute load average / CPUs) when
    over 1, plus 2 s per daemon beyond the first starting at once; at most MAX_PATIENCE."""
    cpus = os.cpu_count() or 1
    load = os.getloadavg()[0] / cpus
    return min(MAX_PATIENCE, base * max(1.0, load) + 2.0 * max(0, starting - 1))


class DaemonDied(RuntimeError):
    """A `bjgrid join` exited before it was up (its log is in the message)."""


class Grid:
    def __init__(
        self,
        lan: VirtualLan,
        *,
        profile: str = "fast",
        key: GridKey | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.lan = lan
        self.key = key or GridKey.generate()
        self.key_file = lan.base_dir / f"grid-{self.key.grid_id}.key"
        if not self.key_file.exists():
            write_key(self.key, self.key_file)
        self.profile = profile
        self.extra_env = dict(env or {})
        """Given to every command of the grid (e.g. ``BJGRID_TIMING``)."""
        self.daemons: dict[str, subprocess.Popen[bytes]] = {}

    def env(self, host: Host, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return host.env(
            {
                "BJGRID_KEY_FILE": str(self.key_file),
                "BJGRID_PROFILE": self.profile,
                **self.extra_env,
                **(extra or {}),
            }
        )

    def join(self, host: Host, *args: str, as_user: RunAs | None = None) -> subprocess.Popen[bytes]:
        """Start `bjgrid join` on ``host`` (log in ``host.home/join.log``); as ``as_user``
        when given (its BJGRID_HOME is still ``host.home``: make it the user's)."""
        argv = [*CLI, "join", *args] if as_user is None else as_user.command(["join", *args])
        env = self.env(host) if as_user is None else as_user.env(self.env(host))
        with open(host.home / "join.log", "ab") as log:
            proc = host.popen(argv, env=env, stdout=log, stderr=log)
        self.daemons[host.name] = proc
        return proc

    def join_all(self, hosts: Sequence[Host], *args: str, timeout: float | None = None) -> None:
        """Start `bjgrid join ARGS` on every host and wait until all are up. A daemon that
        dies at start is started once more (its log printed to stderr) before giving up.
        ``timeout`` (per host) defaults to a load-scaled :func:`patience`."""
        for h in hosts:
            self.join(h, *args)
        for h in hosts:
            wait = timeout if timeout is not None else patience(30.0, starting=len(hosts))
            try:
                self.wait_daemon(h, timeout=wait)
            except DaemonDied as e:
                print(f"{e}\n(starting it once more)", file=sys.stderr, flush=True)
                self.join(h, *args)
                self.wait_daemon(h, timeout=wait)

    def wait_daemon(self, host: Host, *, timeout: float | None = None) -> None:
        """Wait until ``host``'s daemon answers on its local socket (``timeout`` defaults to
        a load-scaled :func:`patience`). DaemonDied if it exits, TimeoutError if too slow."""
        sock = host.home / "state" / "daemon.sock"
        deadline = time.monotonic() + (timeout if timeout is not None else patience(30.0))
        while time.monotonic() < deadline:
            proc = self.daemons.get(host.name)
            if proc is not None and proc.poll() is not None:
                self.daemons.pop(host.name, None)
                raise DaemonDied(
                    f"bjgrid join on {host.name} exited with {proc.returncode} at start; "
                    f"its log:\n{self.log(host)[-4000:]}"
                )
            if sock.exists():
                return
            time.sleep(0.05)
        raise TimeoutError(f"bjgrid join on {host.name} did not start: {self.log(host)[-2000:]}")

    def log(self, host: Host) -> str:
        p = host.home / "join.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def cli(
        self, host: Host, *args: str, timeout: float = 60.0, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return host.run([*CLI, *args], timeout=timeout, env=self.env(host, env))

    def popen_cli(self, host: Host, *args: str, **kw: object) -> subprocess.Popen[bytes]:
        return host.popen([*CLI, *args], env=self.env(host), **kw)

    def status(self, host: Host, *, timeout: float = 3.0) -> list[dict[str, object]]:
        r = self.cli(host, "status", "--json", "--timeout", str(timeout), timeout=timeout + 30)
        if r.returncode != 0:
            raise RuntimeError(
                f"status failed ({r.returncode}): {r.stderr.decode(errors='replace')}"
            )
        rows = json.loads(r.stdout)
        assert isinstance(rows, list)
        return rows

    def wait_idle(
        self, observer: Host, hosts: Sequence[Host], *, timeout: float | None = None
    ) -> list[dict[str, object]]:
        """Wait until ``observer`` sees every one of ``hosts`` idle and reachable (``timeout``
        defaults to a load-scaled :func:`patience`)."""
        names = {h.name for h in hosts}
        deadline = time.monotonic() + (timeout if timeout is not None else patience(30.0))
        rows: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            rows = self.status(observer)
            idle = {r["host"] for r in rows if r["state"] == "idle" and r["reachable"]}
            if names <= idle:
                return rows
            time.sleep(0.2)
        raise TimeoutError(f"not all idle after {timeout} s: {rows}")

    def stop(self, host: Host, timeout: float = 10.0) -> int:
        """SIGTERM the host's `bjgrid join` (clean stop with mDNS goodbyes)."""
        proc = self.daemons.pop(host.name)
        return host.terminate(proc, timeout)


def reservations(host: Host) -> list[dict[str, object]]:
    """The volunteer's own log of reservations (``reserved``/``released`` events)."""
    p = host.home / "log" / "reservations.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


__all__ = ["CLI", "DaemonDied", "Grid", "patience", "reservations"]
