"""The one commit path, for a worker's result and a middleware's alike.

A result is checked (the app's, a task of it, an attempt this journal had), its outputs'
hash compared, staged (``StageOutputs`` -> ``OutputsStaged``), journaled (``Append``: the
entry names the worker's own ``seconds``, no clock reading) and acknowledged (``Ack``) only
once the ``Quorum`` policy says ``W`` copies hold it. A duplicate is acknowledged once the
journal as it stands is durable. Not coordinating any more: no ack (a middleware's result
gets ``NotCommitted``; the worker or the backend keeps it and sends it again).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bonjourgrid.control.messages import TaskResult, is_refusal
from bonjourgrid.engine.app_core import AppCore
from bonjourgrid.engine.app_events import Ack, Discard, NotCommitted, OutputsStaged, StageOutputs
from bonjourgrid.engine.ledger import Key
from bonjourgrid.engine.takeover import Takeover
from bonjourgrid.faulttolerance import entries as je


@dataclass
class _Commit:
    """A result being committed: staged, then journaled as ``seq``, then acknowledged."""

    worker: str
    host: str
    result: TaskResult
    via_backend: bool
    seq: int = -1
    """-1 while its outputs are staged; then the entry to wait for."""


def exit_code(r: TaskResult) -> int | None:
    """The attempt's exit status if it ran to an end (None: timed out, killed, refused)."""
    done = r.exit_code is not None and (r.exit_code != 0 or not r.error)
    return r.exit_code if done else None


class Commits:
    """The results being committed (the one owner of that state)."""

    def __init__(self, core: AppCore, takeover: Takeover) -> None:
        self._core = core
        self._takeover = takeover
        self._commits: dict[Key, _Commit] = {}

    @property
    def keys(self) -> tuple[Key, ...]:
        """Results being committed: staged or waiting for ``W`` copies, not yet acked."""
        return tuple(self._commits)

    def __bool__(self) -> bool:
        return bool(self._commits)

    def result(self, worker: str, r: TaskResult, *, via_backend: bool) -> None:
        core = self._core
        key = (r.task, r.attempt)
        if r.app != core.app or r.task not in core.spec.task_ids:
            core.note(f"dropped a result for {r.app}/{r.task}", warning=True)
            return
        if not core.acting() or key in self._commits:
            if via_backend and not core.acting():
                core.emit(NotCommitted(r.task, r.attempt, "not coordinated here"))
            return  # not ours to commit any more (the worker keeps it), or already under way
        ledger, table = core.ledger, core.table
        host = core.worker_hosts.get(worker, "")
        if worker in ledger.workers:
            host = host or ledger.workers[worker].host
            ledger.workers[worker].full = is_refusal(r)
            self._takeover.adopt_unknown(worker, r.task, r.attempt)
        if r.attempt > table.record(r.task).attempts:
            # An attempt this journal never had (not a duplicate): no ack, the worker keeps
            # it and sends it again, adopted once its worker is linked here.
            core.note(f"{r.task}#{r.attempt} is unknown here; not acknowledged")
            return
        c = _Commit(worker, host, r, via_backend)
        self._commits[key] = c
        ledger.result_in(key, worker)
        code = exit_code(r)
        if hashlib.sha256(r.outputs).hexdigest() != r.outputs_sha256:
            seq = 0
            if table.accepts(r.task, r.attempt, None):
                why = "outputs corrupted in transit"
                seq = core.record(je.Abandoned(r.task, r.attempt, why, True))
            c.seq = seq or core.seq
        elif not table.accepts(r.task, r.attempt, code):
            c.seq = core.seq  # a duplicate: acknowledged once the journal is durable
        elif code is None and not r.outputs:  # nothing to stage
            if is_refusal(r):  # never ran (no free slot there): requeued, not a failure
                entry = je.Abandoned(r.task, r.attempt, f"{host}: {r.error}", False)
            else:
                why = r.error or "no exit status"
                entry = je.Abandoned(r.task, r.attempt, why, True, r.seconds)
            c.seq = core.record(entry) or core.seq
        else:
            core.emit(StageOutputs(r))

    def staged(self, e: OutputsStaged) -> None:
        core = self._core
        key = (e.task, e.attempt)
        c = self._commits.get(key)
        if c is None or c.seq >= 0:
            return
        r = c.result
        code = exit_code(r)
        if e.error:
            core.emit(Discard(e.task, e.attempt))
            why = f"unreadable outputs: {e.error}"
            c.seq = core.record(je.Abandoned(r.task, r.attempt, why, True)) or core.seq
            return
        if not core.acting() or not core.table.accepts(r.task, r.attempt, code):
            core.emit(Discard(e.task, e.attempt))  # settled while the files unpacked
            c.seq = core.seq
            return
        entry: je.Entry
        if code is not None:
            named = c.worker if c.via_backend else ""
            entry = je.Finished(
                r.task, r.attempt, code, r.seconds, 0.0, core.term, named, c.host if named else ""
            )
            if named:
                core.worker_hosts[named] = c.host
        else:  # timed out, killed, or exit 0 without its declared outputs
            entry = je.Abandoned(r.task, r.attempt, r.error or "no exit status", True, r.seconds)
        c.seq = core.record(entry, host=c.host, outputs=r.outputs, promote=True) or core.seq

    def flush(self) -> None:
        """Acknowledge what ``W`` durable copies hold; drop every wait once not acting."""
        core = self._core
        acting = core.acting()
        for key, c in list(self._commits.items()):
            if c.seq < 0 and acting:
                continue
            if not acting:
                if c.seq < 0:
                    core.emit(Discard(key[0], key[1]))  # staged, never to be promoted
                if c.via_backend:
                    core.emit(NotCommitted(key[0], key[1], "not coordinated here any more"))
            elif core.replicas.durable(c.seq):
                core.emit(Ack(c.worker, key[0], key[1], core.term, c.via_backend))
            else:
                continue
            del self._commits[key]
            core.ledger.settle(key)
