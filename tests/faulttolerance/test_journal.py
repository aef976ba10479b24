"""The SQLite journal keeps apps and entries across a reopen (a daemon restart)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bonjourgrid.faulttolerance.journal import Journal


def _add(j: Journal, app: str = "a1") -> None:
    j.add_app(
        app=app,
        spec={"name": "x", "tasks": []},
        bundle=b"\x00bundle",
        digest="d1",
        user="alice",
        term=1,
        role="recruiting",
        coordinator="n1",
        coordinator_host="h1",
    )


def test_apps_and_entries_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    j = Journal(path)
    _add(j)
    j.append("a1", 1, "e1")
    j.append("a1", 2, "e2")
    j.update_app("a1", term=3, role="running", replicas=("n2", "n3"))
    j.close()
    j = Journal(path)
    [row] = j.apps()
    assert (row.app, row.term, row.role, row.replicas) == ("a1", 3, "running", ("n2", "n3"))
    assert row.bundle == b"\x00bundle" and row.spec == {"name": "x", "tasks": []}
    assert j.entries("a1") == ["e1", "e2"]


def test_appending_the_same_entry_number_twice_keeps_the_first(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    _add(j)
    j.append("a1", 1, "first")
    j.append("a1", 1, "second")
    assert j.entries("a1") == ["first"]


def test_a_replica_snapshot_replaces_the_app_and_its_entries(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    _add(j)
    j.append("a1", 1, "old")
    j.add_app(
        app="a1",
        spec={},
        bundle=b"",
        digest="d",
        user="u",
        term=2,
        role="standby",
        coordinator="n2",
        coordinator_host="h2",
        entries=["x", "y"],
    )
    assert j.entries("a1") == ["x", "y"]
    assert j.apps()[0].term == 2


def test_forget_removes_app_and_entries(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    _add(j)
    j.append("a1", 1, "e")
    j.forget("a1")
    assert j.apps() == [] and j.entries("a1") == []


def test_the_journal_is_in_wal_mode(tmp_path: Path) -> None:
    Journal(tmp_path / "j.sqlite").close()
    db = sqlite3.connect(tmp_path / "j.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unknown_columns_are_refused(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    _add(j)
    with pytest.raises(ValueError):
        j.update_app("a1", spec="x")


def test_a_vote_and_the_replica_set_survive_a_reopen(tmp_path: Path) -> None:
    """What a vote needs after a restart (faulttolerance/quorum.py): the term voted in, whom
    this daemon follows, the term its journal came in, the set with its version."""
    path = tmp_path / "journal.sqlite"
    j = Journal(path)
    _add(j)
    j.update_app("a1", term=4, voted=5, leader="n7", journal_term=3)
    j.update_app("a1", replicas=("n2", "n3"), members_version=6, members_old=("n2",))
    j.close()
    j = Journal(path)
    row = j.app("a1")
    assert row is not None
    assert (row.term, row.voted, row.leader, row.journal_term) == (4, 5, "n7", 3)
    assert (row.replicas, row.members_version, row.members_old) == (("n2", "n3"), 6, ("n2",))
    j.update_app("a1", members_old=None)
    assert j.apps()[0].members_old is None and j.app("a2") is None


def test_a_journal_written_before_elections_gets_their_columns(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE apps (app TEXT PRIMARY KEY, spec TEXT NOT NULL, bundle BLOB NOT NULL,"
        " digest TEXT NOT NULL, user TEXT NOT NULL, term INTEGER NOT NULL, role TEXT NOT NULL,"
        " reason TEXT NOT NULL DEFAULT '', coordinator TEXT NOT NULL DEFAULT '',"
        " coordinator_host TEXT NOT NULL DEFAULT '', replicas TEXT NOT NULL DEFAULT '[]',"
        " hosts TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL, ended REAL);"
        "INSERT INTO apps (app, spec, bundle, digest, user, term, role, created)"
        " VALUES ('old', '{}', x'00', 'd', 'bob', 2, 'running', 0);"
    )
    db.commit()
    db.close()
    j = Journal(path)
    row = j.app("old")
    assert row is not None and (row.term, row.voted, row.leader, row.members_old) == (
        2,
        0,
        "",
        None,
    )
