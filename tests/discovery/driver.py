"""Test driver: one ``Discovery`` inside a virtual-LAN host, steered over stdin/stdout.

Run as ``python driver.py '<json config>'`` (config: Discovery keyword arguments). Reads one
JSON command per stdin line and prints one JSON object per stdout line:

- every view change: ``{"ev": "view", "t": <time.time()>, "machines": [...], "coords": [...]}``
- every command: ``{"ev": "done", "op": ..., "t0": ..., "t1": ..., "ms": ..., ...}`` where
  ``t0``/``t1`` bracket the call (wall clock, shared by all namespaces) and ``ms`` is
  ``time.perf_counter()`` around it.

Commands: ``{"op": "start"}`` (``"starve": s`` blocks the event loop for ``s`` seconds at
each of its turns while the start runs, as a loaded machine would),
``{"op": "volunteer", "txt": {...} | null}``,
``{"op": "coord", "txt": {...}}``, ``{"op": "withdraw", "app": ...}``, ``{"op": "settle",
"seconds": s}``, ``{"op": "addresses"}``, ``{"op": "close"}`` (then exits).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
import time
from typing import Any

from bonjourgrid.discovery import CoordTxt, Discovery, NodeTxt


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _node_txt(d: dict[str, Any]) -> NodeTxt:
    return NodeTxt(**{**d, "backends": tuple(d["backends"])})


def _view(disc: Discovery) -> dict[str, Any]:
    return {
        "ev": "view",
        "t": time.time(),
        "machines": [dataclasses.asdict(m) for m in disc.machines()],
        "coords": [dataclasses.asdict(c) for c in disc.coordinators()],
    }


async def _starve(seconds: float) -> None:
    """Hold the event loop ``seconds`` at every turn (a starved loop; the start must wait)."""
    while True:
        time.sleep(seconds)
        await asyncio.sleep(0)


async def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    disc = Discovery(**json.loads(sys.argv[1]))
    disc.add_listener(lambda: _emit(_view(disc)))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        op = cmd["op"]
        extra: dict[str, Any] = {}
        t0, p0 = time.time(), time.perf_counter()
        if op == "start":
            starver = loop.create_task(_starve(cmd["starve"])) if cmd.get("starve") else None
            await disc.start()
            if starver is not None:
                starver.cancel()
        elif op == "volunteer":
            await disc.set_volunteer(None if cmd["txt"] is None else _node_txt(cmd["txt"]))
        elif op == "coord":
            await disc.publish_coordinator(CoordTxt(**cmd["txt"]))
        elif op == "withdraw":
            await disc.withdraw_coordinator(cmd["app"])
        elif op == "settle":
            await disc.wait_settled(cmd["seconds"])
            extra = _view(disc)
        elif op == "addresses":
            extra = {"addresses": disc.addresses}
        elif op == "close":
            await disc.close()
        p1, t1 = time.perf_counter(), time.time()
        _emit({**extra, "ev": "done", "op": op, "t0": t0, "t1": t1, "ms": (p1 - p0) * 1000})
        if op == "close":
            return
    await disc.close()


if __name__ == "__main__":
    asyncio.run(main())
