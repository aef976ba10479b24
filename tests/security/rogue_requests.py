"""A rogue grid-key holder asking another user's coordinator for her app's results, or to
cancel it, written with the project's own client code (control.channel.connect + messages).

Run inside a virtual-LAN host:
``python rogue_requests.py ADDRESS PORT GRID_KEY APP MALLORY_KEY ALICE_KEY``.

``ALICE_KEY`` stands for what a sniffer on the LAN could capture: proofs alice made earlier
(the control channel is authenticated, not encrypted). With it the rogue makes such
"captured" proofs — one naming another node, one it has sent once already, one for another
action, one that is stale — and replays them; with ``MALLORY_KEY`` (her own user key) it signs
proofs of its own, and forges one claiming alice's fingerprint. Prints one JSON line per
attempt: ``{"attempt", "reply" (class name), "reason"}``.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import sys
import time
from pathlib import Path

from bonjourgrid.app.request_proof import make_proof
from bonjourgrid.app.signing import load_user_key
from bonjourgrid.control import channel
from bonjourgrid.control.messages import AppResults, CancelApp, Error, FetchApp
from bonjourgrid.gridkey import load_key


def _identity() -> tuple[dict[str, object], str]:
    """(connect's identity argument, the node id it gives): one for the whole run, in
    whichever form this version of the handshake uses."""
    if "node" in inspect.signature(channel.connect).parameters:
        from bonjourgrid.control.nodekey import NodeKey

        nk = NodeKey.generate()
        return {"node": nk}, nk.node_id
    return {"node_id": "rogue0001"}, "rogue0001"


async def main(address: str, port: int, key_file: str, app: str, mallory: str, alice: str) -> None:
    grid_key = load_key(Path(key_file))
    mallory_key, alice_key = load_user_key(Path(mallory)), load_user_key(Path(alice))
    ident, me = _identity()
    now = time.time()

    async def send(attempt: str, msg: object) -> None:
        ch = await channel.connect(address, port, key=grid_key, timeout=10, **ident)  # type: ignore[arg-type]
        try:
            reply = await ch.request(msg, timeout=30)
        finally:
            await ch.close()
        reason = reply.reason if isinstance(reply, Error) else ""
        leaked = isinstance(reply, AppResults) and bool(reply.outputs or reply.results)
        print(json.dumps({"attempt": attempt, "reply": type(reply).__name__, "reason": reason,
                          "leaked": leaked}), flush=True)  # fmt: skip

    def mine(action: str) -> str:
        return make_proof(mallory_key, action, app, me, now=now).encode()

    def forged(action: str) -> str:
        d = json.loads(mine(action))
        d["fingerprint"] = alice_key.public.fingerprint
        return json.dumps(d)

    def captured(action: str, node: str, *, at: float = now) -> str:
        return make_proof(alice_key, action, app, node, now=at).encode()

    await send("fetch without proof", FetchApp(app))
    await send("fetch with mallory's own proof", FetchApp(app, mine("results")))
    await send("fetch with a forged proof", FetchApp(app, forged("results")))
    other = captured("results", "0" * len(me))
    await send("fetch with alice's proof for another node", FetchApp(app, other))
    stale = captured("results", me, at=now - 900)
    await send("fetch with alice's stale proof", FetchApp(app, stale))
    await send("fetch with garbage", FetchApp(app, base64.b64encode(b"x" * 90).decode()))
    await send("cancel without proof", CancelApp(app, "mallory"))
    await send("cancel with mallory's own proof", CancelApp(app, "mallory", mine("cancel")))
    await send("cancel with a forged proof", CancelApp(app, "mallory", forged("cancel")))
    wrong = captured("results", me)
    await send("cancel with alice's results proof", CancelApp(app, "mallory", wrong))
    # Alice's proof for this very node, captured after she used it: the first use stands for
    # hers (accepted: the check is not a blanket refusal), the replay must be refused.
    used = captured("results", me)
    await send("fetch with alice's proof (her use)", FetchApp(app, used))
    await send("fetch replaying alice's used proof", FetchApp(app, used))


if __name__ == "__main__":
    a = sys.argv[1:]
    asyncio.run(main(a[0], int(a[1]), a[2], a[3], a[4], a[5]))
