"""Reading a virtual-LAN host's journal from outside its daemon (tests, benchmarks).

Read-only and tolerant: a journal not created yet, or caught mid-creation, reads as empty.
What the tests count executions and commits from is the daemon's own record, never a file the
tasks write (issue 4).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from bonjourgrid.testbed.vlan import Host


def _open(host: Host) -> sqlite3.Connection | None:
    path: Path = host.home / "state" / "journal.sqlite"
    if not path.exists():
        return None
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def journal_rows(host: Host, app: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(``app``'s row as {"term", "role"}, its entries in order) in ``host``'s journal."""
    db = _open(host)
    if db is None:
        return None, []
    try:
        row = db.execute("SELECT term, role FROM apps WHERE app = ?", (app,)).fetchone()
        rows = db.execute("SELECT entry FROM entries WHERE app = ? ORDER BY seq", (app,))
        entries = [json.loads(e) for (e,) in rows]
    except sqlite3.OperationalError:
        return None, []
    finally:
        db.close()
    return (None if row is None else {"term": row[0], "role": row[1]}), entries


def journal_apps(host: Host) -> list[str]:
    """The apps ``host``'s journal knows."""
    db = _open(host)
    if db is None:
        return []
    try:
        return [a for (a,) in db.execute("SELECT app FROM apps")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


__all__ = ["journal_apps", "journal_rows"]
