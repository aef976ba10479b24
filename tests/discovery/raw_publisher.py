"""Test helper: publish one service with arbitrary TXT bytes using raw zeroconf, in a vlan host.

``python raw_publisher.py '<json>'`` with keys ``address``, ``type``, ``label``, ``port`` and
``txt_hex`` (a list of hex-encoded TXT strings, each sent as-is: not necessarily key=value, not
necessarily UTF-8); optional ``advertise`` (the addresses put in A/AAAA records, default
``[address]``) and ``ipv6_index`` (also speak IPv6 on that interface). Prints
``{"ev": "ready"}`` once registered; withdraws and exits at stdin EOF.
"""

from __future__ import annotations

import asyncio
import json
import sys

from zeroconf import IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf


async def main() -> None:
    cfg = json.loads(sys.argv[1])
    strings = [bytes.fromhex(h) for h in cfg["txt_hex"]]
    rdata = b"".join(bytes([len(s)]) + s for s in strings)
    info = ServiceInfo(
        cfg["type"],
        f"{cfg['label']}.{cfg['type']}",
        port=cfg["port"],
        properties=rdata,
        server=f"raw-{cfg['label']}.local.",
        parsed_addresses=cfg.get("advertise", [cfg["address"]]),
    )
    index = cfg.get("ipv6_index")
    aiozc = AsyncZeroconf(
        interfaces=[cfg["address"], *([index] if index else [])],
        ip_version=IPVersion.All if index else IPVersion.V4Only,
    )
    await aiozc.async_register_service(info, cooperating_responders=True)
    print(json.dumps({"ev": "ready"}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await aiozc.async_close()


if __name__ == "__main__":
    asyncio.run(main())
