"""A rogue peer holding the grid key, written with the project's own client code.

Run inside a virtual-LAN host: ``python rogue_wire.py ADDRESS PORT KEY_FILE PLAN_JSON``.
``PLAN_JSON`` is a list of ``[message class, field, hostile value, after_reserve]``: for
each, a message of that class is made with harmless values, the one field is replaced by the
hostile value (bypassing the checks a dataclass runs when it is made, as a hostile sender
would), and sent on a fresh authenticated channel (after a valid embedded ``Reserve`` of app
``rogue`` when ``after_reserve``, so that it reaches a worker's conversation). Prints one JSON
line per message: whether the receiver closed the channel, and what it answered if it did not.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path

from bonjourgrid.app.ce_key import CEKey
from bonjourgrid.control import messages
from bonjourgrid.control.channel import connect
from bonjourgrid.control.frame_channel import ChannelClosed
from bonjourgrid.control.nodekey import NodeKey
from bonjourgrid.control.sender_claims import SENDER_FIELDS
from bonjourgrid.gridkey import load_key

ME = NodeKey.generate()
"""The rogue's own node key: the handshake proves this id, so a field naming the sender
holds it (unless it is the field under attack)."""

HARMLESS: dict[type, object] = {
    str: "rogue",
    int: 1,
    float: 1.0,
    bool: False,
    bytes: b"",
}


def _harmless(tp: object) -> object:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return None if type(None) in typing.get_args(tp) else _harmless(typing.get_args(tp)[0])
    if origin is tuple or tp is tuple:
        return ()
    if origin is dict or tp is dict:
        return {}
    if origin is list or tp is list:
        return []
    return HARMLESS[tp]  # type: ignore[index]


def forge(cls_name: str, field: str, value: object) -> object:
    """A ``cls_name`` message with harmless fields and ``field`` set to ``value`` unchecked."""
    cls = getattr(messages, cls_name)
    hints = typing.get_type_hints(cls)
    fields = {
        f.name: _harmless(hints[f.name])
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    if "backend" in fields:
        fields["backend"] = "embedded"
    msg = copy.copy(cls(**fields))
    if isinstance(value, list) and typing.get_origin(hints[field]) is tuple:
        value = tuple(value)
    sender = SENDER_FIELDS.get(cls)
    if sender is not None:
        object.__setattr__(msg, sender, ME.node_id)
    object.__setattr__(msg, field, value)
    return msg


ROGUE_CE = CEKey.generate()
ROGUE_SPEC: dict[str, object] = {"name": "rogue", "tasks": [{"id": "t", "command": "true"}]}


def proven_reserve(volunteer: str) -> messages.Reserve:
    """A valid Reserve of the unsigned app ``rogue`` (its own CE key and proof: what any key
    holder can make), with a lease that expires soon after."""
    return messages.Reserve(
        "rogue", ME.node_id, "rogue", 1, 2.0, "embedded",
        spec=ROGUE_SPEC, ce_key=ROGUE_CE.public.hex(),
        proof=ROGUE_CE.prove("rogue", 1, ME.node_id, volunteer),
    )  # fmt: skip


async def attack(address: str, port: int, key_file: Path, plan: list[list[object]]) -> None:
    key = load_key(key_file)
    for cls_name, field, value, after_reserve in plan:
        msg = forge(str(cls_name), str(field), value)
        ch = await connect(address, port, key=key, node=ME, timeout=10)
        outcome: dict[str, object] = {"msg": cls_name, "field": field, "value": value}
        try:
            if after_reserve:
                reserve = proven_reserve(ch.peer_node)
                outcome["reserved"] = repr(await ch.request(reserve, timeout=10))
            await ch.send(msg)
            reply = await asyncio.wait_for(ch.recv(), 10)
            outcome.update(closed=False, reply=repr(reply))
        except ChannelClosed:
            outcome.update(closed=True)
        except TimeoutError:
            outcome.update(closed=False, reply="no answer in 10 s")
        finally:
            await ch.close()
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    asyncio.run(attack(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4])))
