"""Ended apps are kept for ``results_keep``, then forgotten with their files."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace

from bonjourgrid.config import Config
from bonjourgrid.daemon.hostinfo import HostInfo
from bonjourgrid.daemon.node import NodeDaemon
from bonjourgrid.faulttolerance.journal import Journal
from bonjourgrid.gridkey import GridKey
from bonjourgrid.paths import Paths


def _daemon(tmp_path: Path, keep: float) -> NodeDaemon:
    paths = Paths(tmp_path / "c", tmp_path / "s", tmp_path / "l")
    host = HostInfo("n1", "h1", 1, 1, 512, "linux", "x86_64", ("embedded",))
    config = dataclasses.replace(Config.fast(), results_keep=keep)
    return NodeDaemon(
        paths=paths, config=config, key=GridKey.generate(), host=host, volunteer=False, mdns=False
    )


def _app(root: Path, ended_ago: float | None) -> SimpleNamespace:
    root.mkdir(parents=True)
    (root / "tasks").mkdir()
    ended = None if ended_ago is None else time.monotonic() - ended_ago
    return SimpleNamespace(app_id=root.name, ended_at=ended, store=SimpleNamespace(root=root))


def test_apps_ended_longer_ago_than_results_keep_are_forgotten_with_their_files(
    tmp_path: Path,
) -> None:
    d = _daemon(tmp_path, keep=60.0)
    old, recent, running = (
        _app(tmp_path / n, ago) for n, ago in (("old", 61), ("new", 1), ("run", None))
    )
    d.apps.update({"old": old, "new": recent, "run": running})  # type: ignore[dict-item]
    d.journal = Journal(tmp_path / "journal.sqlite")
    asyncio.run(d._forget_old_apps())
    assert set(d.apps) == {"new", "run"}
    assert not old.store.root.exists()
    assert recent.store.root.exists() and running.store.root.exists()
