"""A LAN host without the key floods a volunteer with connections (issue 12, item 7).

One virtual LAN: h0 submits, h1 volunteers (alone, on a known port), h2 has no grid key and
opens connections to h1's control port as fast as it can: idle ones that never speak, ones
that send garbage, and ones that start a handshake and stall. While the flood goes on, h0's
app must complete on h1 with the correct results, and h1's daemon must still be alive.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bonjourgrid.testbed import VirtualLan
from bonjourgrid.testbed.grid import Grid

pytestmark = pytest.mark.vlan

PORT = 7701

FLOOD = textwrap.dedent(
    """
    import asyncio, os, sys
    host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

    async def one(kind: int, held: list) -> None:
        try:
            r, w = await asyncio.open_connection(host, port)
        except OSError:
            return
        if kind == 1:
            w.write(os.urandom(64))
        elif kind == 2:
            w.write(b"\\x00\\x00\\x00\\x40BJGH")  # a handshake frame that never ends
        held.append(w)

    async def main() -> None:
        held, opened = [], 0
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            await asyncio.gather(*(one(i % 3, held) for i in range(50)))
            opened += 50
            await asyncio.sleep(0.02)
        print(opened, flush=True)

    asyncio.run(main())
    """
)


def test_a_connection_flood_from_a_host_without_the_key_does_not_stop_the_volunteer(
    vlan: object, tmp_path: Path
) -> None:
    lan: VirtualLan = vlan(3)  # type: ignore[operator]
    grid = Grid(lan)
    h0, h1, h2 = lan.hosts
    grid.join_all([h1], "--port", str(PORT), "--slots", "2")
    grid.wait_idle(h0, [h1])

    flood = h2.popen(
        [sys.executable, "-c", FLOOD, h1.address, str(PORT), "40"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        app = tmp_path / "busy" / "app.json"
        app.parent.mkdir()
        tasks = [
            {"id": f"t{i}", "command": f"sleep 0.5; echo $(({i}*{i})) > out.txt",
             "outputs": ["out.txt"]}
            for i in range(8)
        ]  # fmt: skip
        app.write_text(json.dumps({"name": "busy", "workers": 1, "tasks": tasks}))
        out = tmp_path / "busy-out"
        res = grid.cli(h0, "submit", str(app), "-o", str(out), timeout=240)
        still_flooding = flood.poll() is None
    finally:
        stdout, stderr = flood.communicate(timeout=120)
    assert still_flooding, "the flood ended before the app did: it proves nothing"
    assert flood.returncode == 0, stderr.decode(errors="replace")[-2000:]
    assert int(stdout.decode().split()[-1]) >= 1000  # connections the flood opened
    log = (h1.home / "join.log").read_text(errors="replace")
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:] + log[-4000:]
    for i in range(8):
        assert (out / f"t{i}" / "out.txt").read_text() == f"{i * i}\n"
    assert grid.daemons[h1.name].poll() is None, "the volunteer's daemon died"
    assert "Traceback" not in log, log[-3000:]
