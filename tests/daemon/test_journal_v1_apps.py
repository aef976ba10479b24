"""A journal of the previous version: an unfinished app signed by an older bjgrid (signature
version 1) is marked failed with the reason when read back; others are left as they are."""

from __future__ import annotations

import time
from pathlib import Path

from bonjourgrid.app.signing import OLD_SIGNATURE
from bonjourgrid.daemon.journal_resume import JournalResume
from bonjourgrid.faulttolerance.journal import Journal
from bonjourgrid.states.coordinator import Role

V1 = '{"fingerprint":"ab","public_key":"00","signature":"AA==","user":"alice","v":1}'


class _Daemon:
    """Only what ``_fail_if_signed_by_older`` uses of the daemon: its journal."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal


def _add(journal: Journal, app: str, role: Role, signature: str) -> None:
    journal.add_app(
        app=app, spec={"name": "x", "tasks": []}, bundle=b"", digest="d", user="alice",
        term=1, role=role.value, coordinator="n1", coordinator_host="pc", signature=signature,
    )  # fmt: skip


def test_an_unfinished_v1_signed_app_is_failed_with_the_reason(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    _add(journal, "old1", Role.RUNNING, V1)
    _add(journal, "unsigned", Role.RUNNING, "")
    _add(journal, "done1", Role.FINISHED, V1)
    reader, now = JournalResume(_Daemon(journal)), time.time()  # type: ignore[arg-type]
    rows = {r.app: reader._fail_if_signed_by_older(r, now) for r in journal.apps()}
    assert rows["old1"].role == Role.FAILED.value and rows["old1"].reason == OLD_SIGNATURE
    assert "re-submit" in OLD_SIGNATURE
    stored = journal.app("old1")
    assert stored is not None and stored.role == Role.FAILED.value and stored.ended == now
    assert rows["unsigned"].role == Role.RUNNING.value  # resumed, with a new CE key
    assert rows["done1"].role == Role.FINISHED.value  # its results stay served


def test_the_ce_key_column_keeps_an_apps_key_and_reads_empty_without_one(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    _add(journal, "a1", Role.RUNNING, "")
    row = journal.app("a1")
    assert row is not None and row.ce_key == ""
    journal.add_app(
        app="a2", spec={}, bundle=b"", digest="d", user="u", term=1, role="running",
        coordinator="n", coordinator_host="h", ce_key="ab" * 32,
    )  # fmt: skip
    assert journal.app("a2").ce_key == "ab" * 32  # type: ignore[union-attr]
