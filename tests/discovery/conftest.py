"""Fixtures for discovery tests: drivers running a real ``Discovery`` inside virtual-LAN hosts."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bonjourgrid.testbed import Host

HERE = Path(__file__).parent
GRID = "0badc0de"
REPLY_TIMEOUT = 15.0


def node_txt(host: Host, node: str, grid: str = GRID, **kw: Any) -> dict[str, Any]:
    """A volunteer TXT (as the driver's JSON) for ``host``."""
    return {
        "grid": grid,
        "node": node,
        "host": host.name,
        "cpus": 2,
        "slots": 2,
        "mem_mb": 2048,
        "os": "linux",
        "arch": "x86_64",
        "backends": ["embedded"],
        **kw,
    }


class Driver:
    """A ``tests/discovery/driver.py`` process in a host; collects its JSON lines."""

    def __init__(self, host: Host, node: str, grid: str = GRID, **config: Any) -> None:
        self.host = host
        self.node = node
        cfg = {
            "grid_id": grid,
            "node_id": node,
            "hostname": host.name,
            "port": 7000 + host.index,
            "interface_poll": 0.2,
            **config,
        }
        self.proc = host.popen(
            [sys.executable, str(HERE / "driver.py"), json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.events.append(json.loads(line))
                self._cond.notify_all()
        with self._cond:
            self.events.append({"ev": "eof"})
            self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float, start: int = 0
    ) -> dict[str, Any]:
        """The first event from index ``start`` on satisfying ``pred``."""
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.events):
                    ev = self.events[i]
                    if pred(ev):
                        return ev
                    if ev["ev"] == "eof":
                        raise AssertionError(f"driver exited; stderr:\n{''.join(self.stderr)}")
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; events: {self.events[start:]}")
                self._cond.wait(left)

    def call(self, op: str, **kw: Any) -> dict[str, Any]:
        """Sends a command and returns its ``done`` event."""
        start = len(self.events)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        return self.wait_for(lambda e: e["ev"] == "done" and e["op"] == op, REPLY_TIMEOUT, start)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("close")
            finally:
                self.proc.wait(5)


def nodes(view: dict[str, Any], state: str | None = None) -> dict[str, dict[str, Any]]:
    """The machines of a view event by node id (only those in ``state`` if given)."""
    return {m["node"]: m for m in view["machines"] if state is None or m["state"] == state}


@pytest.fixture
def driver() -> Iterator[Callable[..., Driver]]:
    """Factory: ``driver(host, node, grid=GRID, **discovery_kwargs)``; all closed at teardown."""
    made: list[Driver] = []

    def make(host: Host, node: str, grid: str = GRID, **config: Any) -> Driver:
        d = Driver(host, node, grid, **config)
        made.append(d)
        return d

    yield make
    for d in made:
        try:
            d.close()
        except Exception:
            d.proc.kill()
