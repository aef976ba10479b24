"""Finding an app on the LAN: who coordinates it now, or who still holds its results.

``bjgrid results`` and ``bjgrid cancel`` may name an app this machine never held, or one
whose coordinator has changed (a takeover). mDNS says where to look — the app's
``_bjg-coord`` records first, then every machine of the grid (replicas keep an ended app's
results for ``results_keep`` without advertising it) — and the authenticated control channel
says what each holds (``AppQuery``). A claimed term decides nothing by itself: ``collect``
fetches from the holders, best claims first, checks every answer against its manifest
(coordinator/manifest.py) and stops at the first complete answer that adds up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bonjourgrid.control.messages import AppResults, AppState, CancelApp, Error, FetchApp
from bonjourgrid.coordinator.peers import Identity, Peer, ask, query_app

if TYPE_CHECKING:
    from bonjourgrid.discovery import Discovery


def candidates(app: str, discovery: Discovery, me: Identity) -> tuple[list[Peer], list[Peer]]:
    """(the app's coordinator records, every other machine), ourselves excluded."""
    coords = [
        Peer(c.node, c.addresses, c.port, c.txt.term)
        for c in discovery.coordinators()
        if c.app == app and c.node != me.node
    ]
    named = {p.node for p in coords}
    others = [
        Peer(m.node, m.addresses, m.port, 0)
        for m in discovery.machines()
        if m.node != me.node and m.node not in named
    ]
    return coords, others


async def holders(
    app: str, discovery: Discovery, me: Identity, timeout: float
) -> list[tuple[Peer, AppState]]:
    """Every daemon on the LAN that says it holds ``app``, best claim first (complete, then
    coordinating, then term): the order to try them in, not a verdict."""
    coords, others = candidates(app, discovery, me)
    held: list[tuple[Peer, AppState]] = []
    for group in (coords, others):
        if not group:
            continue
        states = await asyncio.gather(*(query_app(p, app, me, timeout) for p in group))
        held += [(p, s) for p, s in zip(group, states, strict=True) if s is not None and s.role]
        if any(s.complete for _, s in held):
            break  # a complete copy among the records: no need to ask every machine
    held.sort(key=lambda ps: (ps[1].complete, ps[1].coordinating, ps[1].term), reverse=True)
    return held


async def find_holder(
    app: str, discovery: Discovery, me: Identity, timeout: float
) -> tuple[Peer, AppState] | None:
    """The best claimed holder of ``app`` (a resuming coordinator's question: did it move on?)."""
    found = await holders(app, discovery, me, timeout)
    return found[0] if found else None


async def fetch(
    peer: Peer, app: str, me: Identity, timeout: float, proof: str = ""
) -> AppResults | Error | None:
    """``peer``'s answer to FetchApp (None if it is silent or answers nonsense)."""
    reply = await ask(peer, FetchApp(app, proof), me, timeout)
    return reply if isinstance(reply, (AppResults, Error)) else None


def answer_problems(app: str, reply: AppResults) -> list[str]:
    from bonjourgrid.coordinator import manifest  # loaded when results are first fetched

    """What does not add up in a holder's answer (empty: it is consistent). Reads the tar."""
    try:
        files = manifest.digests(reply.outputs)
    except manifest.ManifestError as e:
        return [f"unreadable outputs: {e}"]
    return manifest.check_answer(
        app,
        reply.manifest,
        complete=reply.complete,
        outcome=reply.outcome,
        results=reply.results,
        files=files,
    )


@dataclass
class Collected:
    """What asking the holders of an app gave: the answer to use, and why others were not."""

    best: AppResults | None = None
    holder: str = ""
    refusals: list[str] = field(default_factory=list)
    """``"<node>: <reason>"`` for each holder that refused or gave an answer that does not
    add up."""


async def collect(
    app: str,
    found: list[tuple[Peer, AppState]],
    me: Identity,
    timeout: float,
    proof: str,
    ce_public: bytes | None = None,
) -> Collected:
    """Fetch from the holders in ``found`` order, check each answer, keep the first complete
    consistent one (else the consistent one with most tasks done). With ``ce_public`` (the
    app's CE key, when the asker knows the app's signature) an answer counts only if that
    key signed its manifest."""
    from bonjourgrid.coordinator import manifest

    out = Collected()
    for peer, _state in found:
        reply = await fetch(peer, app, me, timeout, proof)
        if reply is None:
            continue
        if isinstance(reply, Error):
            out.refusals.append(f"{peer.node}: {reply.reason}")
            continue
        unsigned = ce_public and manifest.manifest_signature_problem(
            ce_public, reply.manifest, reply.manifest_signature
        )
        if unsigned:
            out.refusals.append(f"{peer.node}: {unsigned}")
            continue
        problems = await asyncio.to_thread(answer_problems, app, reply)
        if problems:
            out.refusals.append(f"{peer.node}: inconsistent answer ({'; '.join(problems[:3])})")
            continue
        if out.best is None or _done(reply) > _done(out.best):
            out.best, out.holder = reply, peer.node
        if reply.complete:
            out.best, out.holder = reply, peer.node
            break
    return out


def _done(r: AppResults) -> int:
    tasks = r.results.get("tasks")
    rows = tasks if isinstance(tasks, list) else []
    return sum(1 for t in rows if isinstance(t, dict) and t.get("state") == "done")


async def cancel(
    peer: Peer, app: str, me: Identity, timeout: float, reason: str, proof: str = ""
) -> str:
    """'' when the coordinator cancelled the app; otherwise why not."""
    reply = await ask(peer, CancelApp(app, reason, proof), me, timeout)
    if isinstance(reply, AppState):
        return ""
    if isinstance(reply, Error):
        return reply.reason
    return f"{peer.node} did not answer"
