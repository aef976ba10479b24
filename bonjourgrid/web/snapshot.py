"""What the page shows, as one JSON-able dict, from what the daemon already knows. Pure.

Inputs are the rows of ``bjgrid status --json`` (daemon/status.py), of ``bjgrid apps --json``
(daemon/local_requests.py) and an app's ``results.json`` document; every string in them may
come from the network (host names, app and task names, stderr). Nothing here is HTML: the
page puts values in with ``textContent`` only, so this module bounds sizes and never escapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

MAX_MACHINES = 2000
MAX_APPS = 500
MAX_TASKS = 1000
"""Rows of one app's task table sent to the page (the failed and running ones first)."""
TAIL_BYTES = 2048
"""Bytes of a failed task's stderr shown (its end: where the error is)."""
MAX_TAILS = 50
"""Failed tasks whose stderr tail is sent with one update."""
MAX_TEXT = 300
"""Characters of any one name, reason or address put on the page."""

MACHINE_STATES = ("idle", "worker", "owner-busy", "paused", "unreachable")
"""How the page groups machines: free for work; running an app's tasks (the page says which
app); its owner is using it (it takes no grid work, a worker's tasks are stopped); its owner
said "not now" (``bjgrid pause``); not answering over the control channel (it may have
crashed)."""


def text(v: object, limit: int = MAX_TEXT) -> str:
    """A bounded string for the page ("" for None)."""
    s = "" if v is None else str(v)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def machine_state(row: Mapping[str, object]) -> str:
    """One of MACHINE_STATES for a ``status --json`` row (its ``owner`` and ``paused``
    fields: daemon/status.py)."""
    if not row.get("reachable"):
        return "unreachable"
    if row.get("paused") is True:
        return "paused"
    if row.get("owner") == "busy":
        return "owner-busy"
    return "worker" if row.get("state") == "worker" else "idle"


def machines(
    rows: Sequence[Mapping[str, object]], extra: Mapping[str, Mapping[str, object]]
) -> list[dict[str, object]]:
    """Page rows for machines; ``extra`` maps node ids to what their mDNS record adds
    (``mem_mb``, ``backends``)."""
    out: list[dict[str, object]] = []
    for r in rows[:MAX_MACHINES]:
        more = extra.get(str(r.get("id")), {})
        backends = more.get("backends")
        addresses = r.get("addresses")
        coordinates = r.get("coordinates")
        out.append(
            {
                "id": text(r.get("id")),
                "host": text(r.get("host")),
                "state": machine_state(r),
                "app": text(r.get("app")) or None,
                "cpus": _int(r.get("cpus")),
                "slots": _int(r.get("slots")),
                "mem_mb": _int(more.get("mem_mb")),
                "backends": [text(b) for b in backends][:16] if isinstance(backends, list) else [],
                "addresses": (
                    [text(a) for a in addresses][:8] if isinstance(addresses, list) else []
                ),
                "coordinates": (
                    [text(a) for a in coordinates][:32] if isinstance(coordinates, list) else []
                ),
                "isolation": text(r.get("isolation")) or None,
                "note": text(r.get("refused") or r.get("isolation_reason")) or None,
            }
        )
    return out


def by_state(rows: Sequence[Mapping[str, object]]) -> dict[str, int]:
    counts = dict.fromkeys(MACHINE_STATES, 0)
    for r in rows:
        counts[str(r["state"])] = counts.get(str(r["state"]), 0) + 1
    return counts


def eta_seconds(samples: Sequence[tuple[float, int]], remaining: int) -> float | None:
    """Seconds until ``remaining`` more tasks end at the rate seen in ``samples`` ((time,
    tasks ended) pairs, oldest first); None until at least one task ended in the window."""
    if remaining <= 0 or len(samples) < 2:
        return 0.0 if remaining <= 0 else None
    (t0, n0), (t1, n1) = samples[0], samples[-1]
    if n1 <= n0 or t1 <= t0:
        return None
    return round(remaining * (t1 - t0) / (n1 - n0), 1)


def apps(
    rows: Sequence[Mapping[str, object]], etas: Mapping[str, float | None]
) -> list[dict[str, object]]:
    """Page rows for ``apps --json`` rows: counts per task state only for apps held here."""
    out: list[dict[str, object]] = []
    for r in rows[:MAX_APPS]:
        counts = r.get("counts")
        per_state = (
            {text(k, 32): v for k, v in counts.items() if _int(v) is not None}
            if isinstance(counts, dict)
            else None
        )
        app = text(r.get("app"))
        out.append(
            {
                "app": app,
                "name": text(r.get("name")),
                "user": text(r.get("user")),
                "coordinator": text(r.get("coordinator")),
                "term": _int(r.get("term")),
                "state": text(r.get("state")),
                "counts": per_state,
                "workers": _int(r.get("workers")),
                "waiting_reason": text(r.get("waiting_reason")) or None,
                "eta": etas.get(app),
                "held": per_state is not None,
            }
        )
    return out


def ended_count(counts: Mapping[str, object]) -> int:
    return sum(v for k, v in counts.items() if k in ("done", "failed") and isinstance(v, int))


def task_count(counts: Mapping[str, object]) -> int:
    return sum(v for v in counts.values() if isinstance(v, int) and not isinstance(v, bool))


_ORDER = {"failed": 0, "running": 1, "ready": 2, "pending": 3}


def tasks(doc: Mapping[str, object], tails: Mapping[str, bytes]) -> dict[str, object]:
    """One app's task table from its results document, failed and running tasks first;
    ``tails`` maps failed task ids to the end of their stderr."""
    raw = doc.get("tasks")
    rows = [t for t in raw if isinstance(t, dict)] if isinstance(raw, list) else []
    rows.sort(key=lambda t: (_ORDER.get(str(t.get("state")), 9), str(t.get("id"))))
    shown: list[dict[str, object]] = []
    for t in rows[:MAX_TASKS]:
        tid = str(t.get("id"))
        seconds = t.get("seconds")
        shown.append(
            {
                "id": text(tid),
                "state": text(t.get("state"), 32),
                "attempts": _int(t.get("attempts")),
                "worker": text(t.get("worker")) or None,
                "exit_code": _int(t.get("exit_code")),
                "seconds": seconds if isinstance(seconds, (int, float)) else None,
                "started": text(t.get("started"), 40) or None,
                "ended": text(t.get("ended"), 40) or None,
                "reason": text(t.get("reason")) or None,
                "stderr_tail": tail(tails[tid]) if tid in tails else None,
            }
        )
    outcome = doc.get("outcome")
    return {
        "app": text(doc.get("app")),
        "name": text(doc.get("name")),
        "outcome": (
            {k: text(v) for k, v in outcome.items() if k in ("state", "reason", "started", "ended")}
            if isinstance(outcome, dict)
            else None
        ),
        "tasks": shown,
        "total": len(rows),
    }


def tail(data: bytes) -> str:
    """The last TAIL_BYTES of a stderr, as text with every control character but newline and
    tab shown as U+FFFD (no terminal escapes; the page shows it as text)."""
    cut = data[-TAIL_BYTES:]
    s = cut.decode("utf-8", "replace")
    if len(data) > TAIL_BYTES:
        s = "…" + s[1:]  # the first character may be a split sequence
    return "".join(c if c in "\n\t" or (ord(c) >= 0x20 and ord(c) != 0x7F) else "\ufffd" for c in s)


def snapshot(
    machine_rows: Sequence[Mapping[str, object]],
    app_rows: Sequence[Mapping[str, object]],
    detail: Mapping[str, object] | None,
    *,
    grid: str,
    host: str,
) -> dict[str, object]:
    """The whole document one update sends."""
    return {
        "grid": text(grid),
        "host": text(host),
        "machines": list(machine_rows),
        "by_state": by_state(machine_rows),
        "apps": list(app_rows),
        "detail": dict(detail) if detail is not None else None,
    }
