"""A rogue coordinator holding the grid key, written with the project's own client code.

Run inside a virtual-LAN host: ``python rogue_coordinator.py ADDRESS PORT KEY_FILE MODE ARGS``
where ``ARGS`` is one JSON object. It prints one JSON line per attempt: the reply (its repr)
and, for a task, the result it got back. Modes:

``own-app`` (``user_key``): reserves the volunteer for an app it signed itself with a trusted
    user key (a lab member gone rogue), properly proven, asking for a lease of a billion
    seconds; stages it, then sends RunTask with another argv than its own signed spec (reading
    the grid key) and one whose inputs overwrite the app's script; then vanishes without a
    Release (the lease must end at the volunteer's cap).
``replay`` (``app``, ``signature``, ``spec``, ``bundle_sha256``): replays a legitimate app's
    signature under another app id, and under the legitimate id with the rogue's own CE key.
``takeover`` (the same): a higher-term Reserve of the legitimate app without the CE key's
    proof (the rogue's own key, and no proof at all), i.e. an attempt to re-home its worker.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path
from typing import Any

from bonjourgrid.app.bundle import pack_entries, sha256_hex
from bonjourgrid.app.ce_key import CEKey
from bonjourgrid.app.signing import load_user_key, sign_app
from bonjourgrid.control.channel import Channel, connect
from bonjourgrid.control.frame_channel import ChannelClosed
from bonjourgrid.control.messages import Reserve, RunTask, StageApp, TaskResult
from bonjourgrid.control.nodekey import NodeKey
from bonjourgrid.gridkey import load_key

ME = NodeKey.generate()
CE = CEKey.generate()
GREEDY_LEASE = 1e9


def say(**fields: object) -> None:
    print(json.dumps(fields, default=repr), flush=True)


async def channel(address: str, port: int, key_file: Path) -> Channel:
    return await connect(address, port, key=load_key(key_file), node=ME, timeout=10)


def reserve(
    volunteer: str, app: str, term: int, *, lease: float = 8.0, proof: bool = True, **kw: Any
) -> Reserve:
    return Reserve(
        app, ME.node_id, "rogue", term, lease, "embedded",
        ce_key=CE.public.hex(),
        proof=CE.prove(app, term, ME.node_id, volunteer) if proof else "",
        **kw,
    )  # fmt: skip


async def ask(ch: Channel, msg: Reserve, what: str) -> object:
    try:
        reply = await ch.request(msg, timeout=10)
    except (ChannelClosed, TimeoutError) as e:
        reply = f"closed: {e}"
    say(attempt=what, reply=repr(reply))
    return reply


async def result_of(ch: Channel, run: RunTask, what: str) -> None:
    await ch.send(run)
    try:
        while True:
            msg = await asyncio.wait_for(ch.recv(), 20)
            if isinstance(msg, TaskResult):
                say(attempt=what, error=msg.error, exit_code=msg.exit_code, outputs=msg.outputs)
                return
    except (ChannelClosed, TimeoutError) as e:
        say(attempt=what, error=f"no result: {e}", exit_code=None, outputs=b"")


async def own_app(address: str, port: int, key_file: Path, args: dict[str, Any]) -> None:
    user = load_user_key(Path(args["user_key"]))
    spec = {
        "name": "innocent",
        "tasks": [
            {"id": "hello", "command": "echo hello", "outputs": []},
            {"id": "next", "command": "sh run.sh", "after": ["hello"], "outputs": []},
        ],
        "files": ["run.sh"],
    }
    bundle = pack_entries({"run.sh": (0o644, 10, io.BytesIO(b"echo next\n"))})
    sha = sha256_hex(bundle)
    app = "innocent1"
    signature = sign_app(user, app, sha, spec, CE.public).encode()
    ch = await channel(address, port, key_file)
    ask_for = reserve(
        ch.peer_node, app, 1, lease=GREEDY_LEASE,
        user=user.user, signature=signature, bundle_sha256=sha, spec=spec,
    )  # fmt: skip
    await ask(ch, ask_for, "own-app-greedy-lease")
    await ch.send(StageApp(app, 1, sha, bundle))
    say(attempt="stage", reply=repr(await asyncio.wait_for(ch.recv(), 20)))
    steal = RunTask(
        app, 1, "hello", 1, ("/bin/sh", "-c", "cat ~/.config/bjgrid/grid.key; cat $CANARY"),
        {}, None, 1, (), b"", sha256_hex(b""),
    )  # fmt: skip
    await result_of(ch, steal, "other-argv")
    evil = pack_entries({"run.sh": (0o755, 21, io.BytesIO(b"cat /etc/shadow # ..\n"))})
    overwrite = RunTask(
        app, 1, "next", 1, ("/bin/sh", "-c", "sh run.sh"), {}, None, 1, (), evil, sha256_hex(evil)
    )
    await result_of(ch, overwrite, "inputs-overwrite-script")
    ch._abort()  # vanish: no Release, no goodbye
    say(attempt="vanished")


async def replay(address: str, port: int, key_file: Path, args: dict[str, Any]) -> None:
    legit = {
        "user": args["user"],
        "signature": args["signature"],
        "bundle_sha256": args["bundle_sha256"],
        "spec": args["spec"],
    }
    for what, app in (("replay-other-id", "stolen01"), ("replay-same-id", args["app"])):
        ch = await channel(address, port, key_file)
        await ask(ch, reserve(ch.peer_node, app, 1, **legit), what)
        await ch.close()


async def takeover(address: str, port: int, key_file: Path, args: dict[str, Any]) -> None:
    legit = {
        "user": args["user"],
        "signature": args["signature"],
        "bundle_sha256": args["bundle_sha256"],
        "spec": args["spec"],
    }
    for what, proof in (("takeover-own-key", True), ("takeover-no-proof", False)):
        ch = await channel(address, port, key_file)
        msg = reserve(ch.peer_node, args["app"], 5, lease=GREEDY_LEASE, proof=proof, **legit)
        await ask(ch, msg, what)
        await ch.close()


MODES = {"own-app": own_app, "replay": replay, "takeover": takeover}

if __name__ == "__main__":
    address, port, key_file, mode, args = sys.argv[1:6]
    asyncio.run(MODES[mode](address, int(port), Path(key_file), json.loads(args)))
