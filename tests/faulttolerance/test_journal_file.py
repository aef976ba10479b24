"""A journal that cannot be used is moved aside (never a daemon that fails to start); older
journals are migrated; the durable setting is on by default."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from bonjourgrid.faulttolerance.journal import Journal
from bonjourgrid.faulttolerance.journal_file import SCHEMA_VERSION, move_aside


def _add(j: Journal, app: str = "a1") -> None:
    j.add_app(
        app=app,
        spec={"name": "x", "tasks": []},
        bundle=b"b" * 20_000,  # several pages, so that damage in the middle hits data
        digest="d1",
        user="alice",
        term=1,
        role="running",
        coordinator="n1",
        coordinator_host="h1",
    )
    j.append(app, 1, "e1")


def _aside(tmp_path: Path, reason: str, side: str = "") -> list[Path]:
    """The journals moved aside for ``reason`` (or their ``side`` files: "-wal", "-shm")."""
    found = [p for p in tmp_path.iterdir() if p.name.startswith(f"journal.sqlite.{reason}-")]
    return sorted(
        p for p in found if (p.name[-4:] if p.name[-4:] in ("-wal", "-shm") else "") == side
    )


def test_garbage_is_moved_aside_with_a_warning_and_a_fresh_journal_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "journal.sqlite"
    garbage = b"this is not a database\x00" * 500
    path.write_bytes(garbage)
    (tmp_path / "journal.sqlite-wal").write_bytes(b"stale wal")
    with caplog.at_level(logging.WARNING):
        j = Journal(path)
    assert j.apps() == []
    _add(j)
    assert j.entries("a1") == ["e1"]
    j.close()
    assert [p.read_bytes() for p in _aside(tmp_path, "corrupt")] == [garbage]
    assert [p.read_bytes() for p in _aside(tmp_path, "corrupt", "-wal")] == [b"stale wal"]
    assert "moved it aside" in caplog.text and "not a database" in caplog.text


def test_damaged_pages_inside_a_valid_journal_are_caught_at_open(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    j = Journal(path)
    _add(j)
    j.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 4 * 4096
    page = 4096
    data[2 * page : 4 * page] = b"\xa5" * (2 * page)  # keep the header, break b-tree pages
    path.write_bytes(bytes(data))
    j = Journal(path)
    assert j.apps() == []
    j.close()
    assert len(_aside(tmp_path, "corrupt") + _aside(tmp_path, "unusable")) == 1


def test_a_journal_of_a_newer_version_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    j = Journal(path)
    _add(j)
    j.close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    j = Journal(path)
    assert j.apps() == []
    j.close()
    [kept] = _aside(tmp_path, "unusable")
    old = sqlite3.connect(kept)
    assert old.execute("SELECT app FROM apps").fetchall() == [("a1",)]  # kept intact
    old.close()


def test_an_unversioned_journal_of_the_first_release_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE apps (app TEXT PRIMARY KEY, spec TEXT NOT NULL, bundle BLOB NOT NULL,
            digest TEXT NOT NULL, user TEXT NOT NULL, term INTEGER NOT NULL,
            role TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
            coordinator TEXT NOT NULL DEFAULT '', coordinator_host TEXT NOT NULL DEFAULT '',
            replicas TEXT NOT NULL DEFAULT '[]', hosts TEXT NOT NULL DEFAULT '{}',
            created REAL NOT NULL, ended REAL);
        CREATE TABLE entries (app TEXT NOT NULL, seq INTEGER NOT NULL, entry TEXT NOT NULL,
            PRIMARY KEY (app, seq));
        INSERT INTO apps (app, spec, bundle, digest, user, term, role, created)
            VALUES ('old', '{"name": "x", "tasks": []}', x'00', 'd', 'bob', 2, 'running', 1.0);
        INSERT INTO entries VALUES ('old', 1, 'e1');
        """
    )
    db.close()
    j = Journal(path)
    [row] = j.apps()
    assert (row.app, row.term, row.signature, row.voted) == ("old", 2, "", 0)
    assert j.entries("old") == ["e1"]
    j.close()
    assert not list(tmp_path.glob("journal.sqlite.*-*"))
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_commits_are_durable_by_default(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite")
    assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    j.close()


def test_moving_aside_never_overwrites_an_earlier_copy(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"first")
    a = move_aside(path, "corrupt", now=0.0)
    path.write_bytes(b"second")
    b = move_aside(path, "corrupt", now=0.0)
    assert a != b and a.read_bytes() == b"first" and b.read_bytes() == b"second"
    assert not path.exists()
