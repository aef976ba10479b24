"""Proof that a request about a signed app comes from the user who submitted it. Pure.

The grid key only says "member of this lab". For a signed app, ``bjgrid results`` and
``bjgrid cancel`` are answered only to the holder of the key that signed it: the CLI (which
can read the user's key) signs a ``RequestProof`` over the action, the app id, the node id of
the daemon that will carry the request, a fresh random nonce and the time; that daemon puts
it in ``FetchApp``/``CancelApp``; the holder of the app checks it with the public key of the
app's signature (``AppSignature.public_key``, kept in its journal) by ``verify_proof``:

- the action and app are the ones asked for (a results proof cannot cancel, nor another app);
- the node is the authenticated peer that carries it (a holder that received a proof cannot
  replay it to another holder under its own name);
- it was issued within ``FRESHNESS`` seconds of the holder's clock, either way (LAN clocks
  drift; five minutes is generous and still bounds how long a captured proof is worth
  anything);
- its nonce was not seen in that window (``NonceCache``: memory bounded by what the window
  can hold, and only proofs that verified enter it, so nobody but the submitter can fill it).

What is signed (``proof_payload``): a domain tag, then the canonical JSON (sorted keys, no
spaces, ASCII) of ``{"action", "app", "issued", "node", "nonce"}``. ``encode()`` gives one
compact JSON string for a message field. Time is passed in everywhere.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
from dataclasses import dataclass, field

from bonjourgrid import curves
from bonjourgrid.app.signing import UserKey, fingerprint

ACTIONS = ("results", "cancel")
"""``results``: FetchApp (outputs and results.json); ``cancel``: CancelApp."""
FRESHNESS = 300.0
"""Seconds a proof is good for, either side of the holder's clock."""
NONCE_CAPACITY = 4096
"""Most nonces a holder remembers at once (far more requests than one user makes in
``FRESHNESS``); a full cache refuses rather than forgets."""
MAX_PROOF = 1024
"""Longest encoded proof accepted (an honest one is ~330 characters)."""
_DOMAIN = b"bjgrid request proof v1\0"
_NONCE = re.compile(r"[0-9a-f]{32}")


class ProofError(Exception):
    """A proof blob is malformed; the message says how."""


class ProofRefused(Exception):
    """A request is refused for its proof: the asker is not (shown to be) the submitter.
    ``reason`` says why, for the log and the asker."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RequestProof:
    action: str
    app: str
    node: str
    nonce: str
    issued: float
    fingerprint: str
    """Of the key that signed (for a clear refusal; the check uses the app's own key)."""
    signature: bytes = field(repr=False)

    def encode(self) -> str:
        return json.dumps(
            {
                "v": 1,
                "action": self.action,
                "app": self.app,
                "node": self.node,
                "nonce": self.nonce,
                "issued": self.issued,
                "fingerprint": self.fingerprint,
                "signature": base64.b64encode(self.signature).decode(),
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, text: str) -> RequestProof:
        if len(text) > MAX_PROOF:
            raise ProofError(f"request proof longer than {MAX_PROOF} characters")
        try:
            d = json.loads(text)
            if not isinstance(d, dict) or d.get("v") != 1:
                raise ValueError("not a version 1 request proof")
            sig = base64.b64decode(str(d["signature"]), validate=True)
            issued = d["issued"]
            if isinstance(issued, bool) or not isinstance(issued, (int, float)):
                raise ValueError("issued is not a number")
            strs = [d[k] for k in ("action", "app", "node", "nonce", "fingerprint")]
            if not all(isinstance(s, str) for s in strs):
                raise ValueError("a field is not a string")
        except (ValueError, KeyError, TypeError, binascii.Error) as e:
            raise ProofError(f"malformed request proof: {e}") from None
        if len(sig) != 64 or not math.isfinite(float(issued)):
            raise ProofError("malformed request proof: bad signature or time")
        if not _NONCE.fullmatch(d["nonce"]):
            raise ProofError("malformed request proof: nonce is not 32 hex digits")
        action, app, node, nonce, fp = strs
        return cls(action, app, node, nonce, float(issued), fp, sig)


def proof_payload(action: str, app: str, node: str, nonce: str, issued: float) -> bytes:
    """The exact bytes a user signs for one request (see the module docstring)."""
    body = {"action": action, "app": app, "issued": issued, "node": node, "nonce": nonce}
    return _DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def make_proof(
    key: UserKey, action: str, app: str, node: str, *, now: float, nonce: str | None = None
) -> RequestProof:
    """A proof that ``key``'s user asks ``action`` on ``app`` through daemon ``node``."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    nonce = nonce if nonce is not None else os.urandom(16).hex()
    issued = round(now, 3)
    sig = key.sign(proof_payload(action, app, node, nonce, issued))
    return RequestProof(action, app, node, nonce, issued, key.public.fingerprint, sig)


class NonceCache:
    """The nonces of proofs accepted within the freshness window (bounded; time passed in)."""

    def __init__(self, *, window: float = FRESHNESS, capacity: int = NONCE_CAPACITY) -> None:
        self.window = window
        self.capacity = capacity
        self._until: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._until)

    def __contains__(self, nonce: str) -> bool:
        return nonce in self._until

    def prune(self, now: float) -> None:
        for n in [n for n, t in self._until.items() if t < now]:
            del self._until[n]

    def add(self, nonce: str, issued: float, now: float) -> bool:
        """Remember ``nonce`` until its proof goes stale; False if seen already or full."""
        self.prune(now)
        if nonce in self._until or len(self._until) >= self.capacity:
            return False
        self._until[nonce] = issued + self.window
        return True


def verify_proof(
    text: str,
    *,
    submitter: bytes,
    action: str,
    app: str,
    node: str,
    now: float,
    seen: NonceCache,
) -> RequestProof:
    """Accept a request on a signed app, or raise ProofRefused saying why.

    ``submitter`` is the raw public key of the app's signature; ``node`` the authenticated
    peer that carried the request. The nonce is remembered only once everything else holds.
    """
    if not text:
        raise ProofRefused("no proof came, and the app is signed (only its submitter may ask)")
    try:
        p = RequestProof.decode(text)
    except ProofError as e:
        raise ProofRefused(str(e)) from None
    if p.action != action or p.app != app:
        raise ProofRefused(f"the proof is for {p.action} of app {p.app}, not {action} of {app}")
    if p.node != node:
        raise ProofRefused(f"the proof names node {p.node}, but {node} carried it")
    want = fingerprint(submitter)
    if not curves.ed25519_valid(
        submitter, p.signature, proof_payload(p.action, p.app, p.node, p.nonce, p.issued)
    ):
        who = "a forged proof" if p.fingerprint == want else f"signed by key {p.fingerprint}"
        raise ProofRefused(f"{who}, and the app's key is {want}") from None
    if abs(now - p.issued) > seen.window:
        raise ProofRefused(f"the proof is stale ({now - p.issued:+.0f} s from this clock)")
    if p.nonce in seen:
        raise ProofRefused("the proof was used already (a replay)")
    if not seen.add(p.nonce, p.issued, now):
        raise ProofRefused("too many recent requests for this holder to remember; try later")
    return p
