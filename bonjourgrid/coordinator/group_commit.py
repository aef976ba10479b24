"""Group commit for one app's journal: the entries the engine appends within one turn of the
event loop are made durable together, then whatever waited for them is carried out.

An ``Append`` is gathered (``add``), not written at once. ``flush`` — on the loop's next
turn, or earlier when the shell carries out an action that depends on the journal — makes the
gathered promotions durable with one fsync of ``tasks/`` (result_store.py), commits the
entries in one SQLite transaction (one WAL fsync), streams them to the replicas, and only
then carries out the actions held behind them (``hold``: the shell holds ``Ack`` and
``Launch``). So no acknowledgement and no launch ever precedes the entry it follows, and no
replica receives an entry before the coordinator's own disk has it — exactly as if each entry
had been written alone; results that arrive together share one commit.

A failed flush carries out nothing that was held and reports the error (``on_failure``): the
shell stops there, as if the daemon had stopped at that point.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from bonjourgrid.control.messages import JournalAppend
from bonjourgrid.engine import app_events as ev

if TYPE_CHECKING:
    from bonjourgrid.coordinator.result_store import ResultStore
    from bonjourgrid.faulttolerance.journal import Journal


class GroupCommit:
    def __init__(
        self,
        app: str,
        store: ResultStore,
        journal: Journal,
        *,
        stream: Callable[[JournalAppend], None],
        carry_out: Callable[[ev.Action], None],
        on_failure: Callable[[Exception], None],
    ) -> None:
        self._app = app
        self._store = store
        self._journal = journal
        self._stream_to_replicas = stream
        self._carry_out = carry_out
        self._on_failure = on_failure
        self._entries: list[tuple[int, str]] = []
        self._stream: list[JournalAppend] = []
        self._held: list[ev.Action] = []
        self._promoted = False
        self._soon: asyncio.Handle | None = None
        self._stopped = False

    @property
    def pending(self) -> bool:
        """Entries gathered and not yet committed."""
        return bool(self._entries)

    @property
    def scheduled(self) -> bool:
        """A flush waits for the loop's next turn."""
        return self._soon is not None

    def add(self, msg: JournalAppend, *, promoted: bool) -> None:
        """Gather entry ``msg.seq`` (its files already renamed into place when ``promoted``)
        and the message that streams it; flush on the loop's next turn."""
        self._entries.append((msg.seq, msg.entry))
        self._stream.append(msg)
        self._promoted = self._promoted or promoted
        if self._soon is None:
            self._soon = asyncio.get_running_loop().call_soon(self._flush_soon)

    def hold(self, action: ev.Action) -> None:
        """Carry out ``action`` once the gathered entries are committed."""
        self._held.append(action)

    def flush(self) -> None:
        """Commit what is gathered, stream it, then carry out what was held; raises if the
        journal cannot be written (nothing held is carried out then)."""
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        if not self._entries or self._stopped:
            return
        entries, stream, held = self._entries, self._stream, self._held
        self._entries, self._stream, self._held = [], [], []
        if self._promoted:
            self._promoted = False
            self._store.sync_promotions()
        self._journal.append_many(self._app, entries)
        for msg in stream:
            self._stream_to_replicas(msg)
        for action in held:
            self._carry_out(action)

    def stop(self) -> None:
        """Never commit what is gathered (the shell is broken)."""
        self._stopped = True
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        self._entries, self._stream, self._held = [], [], []

    def _flush_soon(self) -> None:
        self._soon = None
        try:
            self.flush()
        except Exception as e:
            self.stop()
            self._on_failure(e)
