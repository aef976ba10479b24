"""An app's committed outputs on the coordinator's disk, and its results.json.

Layout under ``apps/<app-id>/``: ``tasks/<task-id>/`` holds the last committed attempt's
``stdout``, ``stderr`` and declared outputs. A commit extracts into a temporary folder and
renames it into place, so a crash leaves either the old or the new attempt, never a mix.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Mapping
from pathlib import Path

from bonjourgrid.app.bundle import pack_files, unpack_files
from bonjourgrid.app.spec import AppSpec, TaskSpec
from bonjourgrid.states.tasktable import TaskTable


class ResultStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tasks = root / "tasks"
        self.tasks.mkdir(parents=True, exist_ok=True)

    def stage(self, task: str, attempt: int, blob: bytes) -> None:
        """Unpack an attempt's files beside the final place (slow part; run it in a thread)."""
        tmp = self._staging(task, attempt)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        unpack_files(blob, tmp)

    def promote(self, task: str, attempt: int) -> None:
        """Make a staged attempt the task's committed outputs (renames only: quick, atomic)."""
        final = self.tasks / task
        old = self.tasks / f".{task}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        self._staging(task, attempt).rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def discard(self, task: str, attempt: int) -> None:
        shutil.rmtree(self._staging(task, attempt), ignore_errors=True)

    def _staging(self, task: str, attempt: int) -> Path:
        return self.tasks / f".{task}.{attempt}.tmp"

    def inputs_for(self, task: TaskSpec, spec: AppSpec) -> bytes:
        """A tar of the declared outputs of ``task``'s predecessors, for its working dir."""
        if not task.after:
            return b""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
            for pred in task.after:
                src = self.tasks / pred
                for rel in spec.task(pred).outputs:
                    if (src / rel).exists():
                        tar.add(src / rel, arcname=rel)
        return buf.getvalue()

    def export(self) -> bytes:
        """A tar of ``<task-id>/...`` for every task with committed outputs."""
        names = sorted(p.name for p in self.tasks.iterdir() if not p.name.startswith("."))
        return pack_files(self.tasks, names) if names else b""


def results_document(
    app_id: str, spec: AppSpec, table: TaskTable, hosts: Mapping[str, str]
) -> dict[str, object]:
    """``results.json`` as DESIGN.md's contract fixes it; ``hosts`` maps node ids to names."""
    tasks: list[object] = []
    for rec in table.records():
        tasks.append(
            {
                "id": rec.id,
                "state": rec.state.value,
                "exit_code": rec.exit_code,
                "attempts": rec.attempts,
                "worker": hosts.get(rec.worker, rec.worker) if rec.worker else None,
                "seconds": None if rec.seconds is None else round(rec.seconds, 3),
            }
        )
    return {"app": app_id, "name": spec.name, "tasks": tasks}
