"""The daemon's journal: SQLite in WAL mode under the state dir, one file per daemon.

It holds every app this daemon coordinates or keeps as a replica: the app itself (spec,
bundle, who submitted it, term, role, outcome) and its entries (faulttolerance/entries.py)
numbered from 1. A restarted daemon reads it back and replays the entries: finished tasks are
never rerun. Result files live beside it (coordinator/result_store.py) and are in place
before their ``Finished`` entry is committed, so a committed entry always has its files.

Durability: WAL with ``synchronous=FULL``: every commit is fsynced (the WAL) before it
returns, so a committed entry survives a power cut as well as a kill -9; the result files are
fsynced before their entry is committed (result_store.py). ``synchronous="NORMAL"`` (commits
survive a crash of the process only) is there for the benchmark's baseline.

Opening (journal_file.py): a schema version, migration of older journals, and a corrupt,
unreadable or too-new file moved aside with a warning so the daemon still starts.

Thread-safety: one connection, used from the daemon's event loop only.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bonjourgrid.faulttolerance.journal_file import open_journal_db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (
    app TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    bundle BLOB NOT NULL,
    digest TEXT NOT NULL,
    user TEXT NOT NULL,
    term INTEGER NOT NULL,
    role TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    coordinator TEXT NOT NULL DEFAULT '',
    coordinator_host TEXT NOT NULL DEFAULT '',
    replicas TEXT NOT NULL DEFAULT '[]',
    hosts TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    ended REAL
);
CREATE TABLE IF NOT EXISTS entries (
    app TEXT NOT NULL,
    seq INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (app, seq)
);
"""

_ELECTION_COLUMNS = (
    ("voted", "INTEGER NOT NULL DEFAULT 0"),
    ("leader", "TEXT NOT NULL DEFAULT ''"),
    ("journal_term", "INTEGER NOT NULL DEFAULT 0"),
    ("members_version", "INTEGER NOT NULL DEFAULT 0"),
    ("members_old", "TEXT"),
)
"""An app's election state (faulttolerance/quorum.py): what a vote needs after a restart."""


@dataclass(frozen=True)
class AppRow:
    """One app as the journal holds it."""

    app: str
    spec: dict[str, object]
    bundle: bytes
    digest: str
    user: str
    term: int
    role: str
    reason: str
    coordinator: str
    coordinator_host: str
    replicas: tuple[str, ...]
    hosts: dict[str, str]
    created: float
    ended: float | None
    """Wall-clock time the app ended (results are kept ``results_keep`` after it)."""
    signature: str = ""
    """The app's signature (``AppSignature.encode()``); "" when unsigned."""
    signer: str = ""
    """The user name in the signature."""
    voted: int = 0
    """The highest term this daemon voted in for the app (its own candidacy included)."""
    leader: str = ""
    """Whom this daemon follows in ``term`` (the coordinator, or the candidate it granted)."""
    journal_term: int = 0
    """The term of the stream the entries came in (the coordinator's own term for its app)."""
    members_version: int = 0
    members_old: tuple[str, ...] | None = None
    """The replica set (``replicas``) has this version; ``members_old`` is the set before
    the last change while that change is not confirmed (faulttolerance/quorum.py)."""
    ce_key: str = ""
    """The app's private CE key (hex, app/ce_key.py); "" in journals of older versions."""


_ADDED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "apps": (
        ("signature", "TEXT NOT NULL DEFAULT ''"),
        ("signer", "TEXT NOT NULL DEFAULT ''"),
        *_ELECTION_COLUMNS,
        ("ce_key", "TEXT NOT NULL DEFAULT ''"),
    ),
}
"""Columns added after the first release (added to older journals when opened): append new
ones here; see journal_file.py for changes a column cannot express."""


class Journal:
    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        """Open (or create) the journal at ``path``; never fails on a bad file (it is moved
        aside, journal_file.py). ``synchronous``: SQLite's setting, FULL unless benchmarking."""
        self.path = path
        self._db = open_journal_db(path, _SCHEMA, _ADDED_COLUMNS, synchronous=synchronous)

    def close(self) -> None:
        self._db.close()

    # --- apps -----------------------------------------------------------------------------

    def add_app(
        self,
        *,
        app: str,
        spec: dict[str, object],
        bundle: bytes,
        digest: str,
        user: str,
        term: int,
        role: str,
        coordinator: str,
        coordinator_host: str,
        replicas: tuple[str, ...] = (),
        hosts: dict[str, str] | None = None,
        entries: list[str] | None = None,
        signature: str = "",
        signer: str = "",
        ce_key: str = "",
    ) -> None:
        """Insert (or replace, with its entries) an app; ``entries`` numbered from 1."""
        with self._tx():
            self._db.execute("DELETE FROM entries WHERE app = ?", (app,))
            self._db.execute(
                "INSERT OR REPLACE INTO apps (app, spec, bundle, digest, user, term, role,"
                " coordinator, coordinator_host, replicas, hosts, created, signature, signer,"
                " ce_key)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    app,
                    json.dumps(spec),
                    bundle,
                    digest,
                    user,
                    term,
                    role,
                    coordinator,
                    coordinator_host,
                    json.dumps(list(replicas)),
                    json.dumps(hosts or {}),
                    time.time(),
                    signature,
                    signer,
                    ce_key,
                ),
            )
            self._db.executemany(
                "INSERT INTO entries (app, seq, entry) VALUES (?, ?, ?)",
                [(app, i, e) for i, e in enumerate(entries or [], start=1)],
            )

    def update_app(self, app: str, **fields: Any) -> None:
        """Change some columns: term, role, reason, coordinator, coordinator_host, replicas,
        hosts, ended, and the election state: voted, leader, journal_term, members_version,
        members_old (a tuple, or None)."""
        allowed = {
            "term",
            "role",
            "reason",
            "coordinator",
            "coordinator_host",
            "replicas",
            "hosts",
            "ended",
            *(name for name, _ in _ELECTION_COLUMNS),
        }
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"not journal columns: {sorted(bad)}")
        values = [_column(k, v) for k, v in fields.items()]
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._tx():
            self._db.execute(f"UPDATE apps SET {sets} WHERE app = ?", (*values, app))

    def apps(self) -> list[AppRow]:
        rows = self._db.execute(
            "SELECT app, spec, bundle, digest, user, term, role, reason, coordinator,"
            " coordinator_host, replicas, hosts, created, ended, signature, signer,"
            " voted, leader, journal_term, members_version, members_old, ce_key"
            " FROM apps ORDER BY created"
        ).fetchall()
        return [
            AppRow(
                app=r[0],
                spec=json.loads(r[1]),
                bundle=bytes(r[2]),
                digest=r[3],
                user=r[4],
                term=r[5],
                role=r[6],
                reason=r[7],
                coordinator=r[8],
                coordinator_host=r[9],
                replicas=tuple(json.loads(r[10])),
                hosts=dict(json.loads(r[11])),
                created=r[12],
                ended=r[13],
                signature=r[14],
                signer=r[15],
                voted=r[16],
                leader=r[17],
                journal_term=r[18],
                members_version=r[19],
                members_old=None if r[20] is None else tuple(json.loads(r[20])),
                ce_key=r[21],
            )
            for r in rows
        ]

    def app(self, app: str) -> AppRow | None:
        """One app's row, None if the journal does not hold it."""
        return next((r for r in self.apps() if r.app == app), None)

    def forget(self, app: str) -> None:
        with self._tx():
            self._db.execute("DELETE FROM entries WHERE app = ?", (app,))
            self._db.execute("DELETE FROM apps WHERE app = ?", (app,))

    # --- entries ----------------------------------------------------------------------------

    def append(self, app: str, seq: int, entry: str) -> None:
        """Commit entry ``seq`` of ``app``; the same (app, seq) again is a no-op."""
        with self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO entries (app, seq, entry) VALUES (?, ?, ?)",
                (app, seq, entry),
            )

    def append_many(self, app: str, entries: Sequence[tuple[int, str]]) -> None:
        """Commit several ``(seq, entry)`` of ``app`` in one transaction (one fsync: group
        commit); an (app, seq) already there is a no-op."""
        with self._tx():
            self._db.executemany(
                "INSERT OR IGNORE INTO entries (app, seq, entry) VALUES (?, ?, ?)",
                [(app, seq, entry) for seq, entry in entries],
            )

    def entries(self, app: str) -> list[str]:
        """The app's entries in order (1, 2, 3, ...)."""
        rows = self._db.execute(
            "SELECT entry FROM entries WHERE app = ? ORDER BY seq", (app,)
        ).fetchall()
        return [r[0] for r in rows]

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)


def _column(name: str, value: Any) -> Any:
    """A value as its column stores it (lists and maps as JSON)."""
    if name in ("replicas", "members_old"):
        return None if value is None else json.dumps(list(value))
    if name == "hosts":
        return json.dumps(value)
    return value


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
