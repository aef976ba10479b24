"""Opening the journal's SQLite file: durability pragmas, schema version, bad files moved aside.

Contract of :func:`open_journal_db`: it always returns a usable connection on a journal of the
current schema version. A file SQLite cannot read (not a database, malformed pages, failed
``quick_check``, unreadable), a journal written by a newer bjgrid, or an older one with no
migration is renamed aside — ``journal.sqlite.<reason>-<UTC time>``, with its ``-wal`` and
``-shm`` — with a warning in the log, and a fresh journal is started in its place. The apps it
held are then lost on this host (their replicas, if any, still hold them). A file that is only
*busy* (another process holds a lock) is never moved: the error is raised.

The version is SQLite's ``PRAGMA user_version``. Journals written before versioning read as
version 0 and are migrated. To change the schema: add the column to ``columns`` of
:func:`open_journal_db`'s caller (columns are added idempotently, so a column needs no version
bump), or, for a change columns cannot express, bump ``SCHEMA_VERSION`` and register a step in
``MIGRATIONS`` (or none: journals of the old version are then moved aside with a warning).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
"""The journal layout this code writes (``PRAGMA user_version``)."""

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: dict[int, Migration] = {
    # 0 -> 1: unversioned journals have the same tables; missing columns are added below.
    0: lambda db: None,
}
"""``MIGRATIONS[v]`` turns a version-``v`` journal into version ``v + 1`` (in a transaction)."""

_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED: in use, not damaged
_SIDE_FILES = ("", "-wal", "-shm", "-journal")

Columns = Mapping[str, Sequence[tuple[str, str]]]


class JournalUnusable(Exception):
    """The file cannot serve as this version's journal (the reason is the message)."""


def open_journal_db(
    path: Path, schema: str, columns: Columns, *, synchronous: str
) -> sqlite3.Connection:
    """A connection to the journal at ``path`` (see the module docstring). ``schema`` creates
    the tables; ``columns`` lists, per table, columns added after the first release;
    ``synchronous`` is SQLite's setting (``FULL``: a commit survives a power cut)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db: sqlite3.Connection | None = None
    try:
        db = _connect(path)
        _prepare(db, schema, columns, synchronous)
        return db
    except JournalUnusable as e:
        reason, why = "unusable", str(e)
    except sqlite3.DatabaseError as e:
        if getattr(e, "sqlite_errorcode", None) in _BUSY_CODES:
            if db is not None:
                db.close()
            raise
        reason, why = "corrupt", f"{type(e).__name__}: {e}"
    except OSError as e:
        reason, why = "unreadable", f"{type(e).__name__}: {e}"
    # Renamed while still open: closing would otherwise delete or checkpoint the -wal we keep.
    kept = move_aside(path, reason)
    if db is not None:
        db.close()
    log.warning(
        "journal %s cannot be used (%s); moved it aside to %s and started a fresh journal: "
        "the apps it held are not resumed on this host",
        path,
        why,
        kept,
    )
    db = _connect(path)
    try:
        _prepare(db, schema, columns, synchronous)
    except BaseException:
        db.close()
        raise
    return db


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)


def _prepare(db: sqlite3.Connection, schema: str, columns: Columns, synchronous: str) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    check = db.execute("PRAGMA quick_check").fetchone()
    if check is None or check[0] != "ok":
        raise JournalUnusable(f"integrity check failed: {check[0] if check else 'no answer'}")
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise JournalUnusable(
            f"schema version {version} was written by a newer bjgrid (this one reads "
            f"{SCHEMA_VERSION})"
        )
    db.execute("BEGIN IMMEDIATE")
    try:
        _migrate(db, version)
        for statement in _statements(schema):
            db.execute(statement)
        _add_columns(db, columns)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _migrate(db: sqlite3.Connection, version: int) -> None:
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise JournalUnusable(f"schema version {version} is too old to migrate")
        step(db)
        version += 1


def _statements(schema: str) -> list[str]:
    """The statements of ``schema`` (executescript would commit our transaction)."""
    return [s.strip() for s in schema.split(";") if s.strip()]


def _add_columns(db: sqlite3.Connection, columns: Columns) -> None:
    """Columns added after the first release, to journals written before them."""
    for table, wanted in columns.items():
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        for name, decl in wanted:
            if name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")


def move_aside(path: Path, reason: str, now: float | None = None) -> Path:
    """Rename ``path`` and its -wal/-shm/-journal to ``<path>.<reason>-<UTC time>``; the new
    name of the main file (which may not have existed). Never overwrites an earlier one."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    base = path.with_name(f"{path.name}.{reason}-{stamp}")
    n = 1
    while any(Path(f"{base}{suffix}").exists() for suffix in _SIDE_FILES):
        base = path.with_name(f"{path.name}.{reason}-{stamp}.{n}")
        n += 1
    for suffix in _SIDE_FILES:
        src = Path(f"{path}{suffix}")
        if src.exists() or src.is_symlink():
            os.replace(src, f"{base}{suffix}")
    return base
