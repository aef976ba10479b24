"""An app's committed outputs on the coordinator's disk, and its results.json.

Layout under ``apps/<app-id>/``: ``tasks/<task-id>/`` holds the last committed attempt's
``stdout``, ``stderr`` and declared outputs.

Durability (a commit survives a power cut, not only a kill -9): ``stage`` extracts into a
temporary folder beside the final place and fsyncs every file and folder in it; ``promote``
puts it in place with one atomic rename — ``renameat2(RENAME_EXCHANGE)`` swaps it with the
previous attempt's folder when there is one — then fsyncs ``tasks/``. The caller commits the
journal entry only after ``promote`` returns, so at every instant the task's folder is either
the old attempt or the new one, never a mix, and a committed entry always has its files.
Where the exchange is not supported (not Linux, or a filesystem without it) promotion falls
back to two renames, which a crash between them can leave with no folder at all (the entry is
not committed yet then, so the task runs again).
"""

from __future__ import annotations

import ctypes
import errno
import io
import logging
import os
import shutil
import tarfile
from collections.abc import Mapping
from pathlib import Path

from bonjourgrid.app.bundle import pack_files, unpack_files
from bonjourgrid.app.spec import AppSpec, TaskSpec
from bonjourgrid.coordinator.results_detail import TaskTimes, task_state
from bonjourgrid.safepath import under
from bonjourgrid.states.tasktable import TaskTable

log = logging.getLogger(__name__)


class ResultStore:
    def __init__(self, root: Path, *, durable: bool = True) -> None:
        """``durable=False`` skips every fsync (the benchmark's baseline only)."""
        self.root = root
        self.tasks = root / "tasks"
        self.durable = durable
        self.tasks.mkdir(parents=True, exist_ok=True)
        if durable:
            fsync_dir(self.tasks.parent)

    def stage(self, task: str, attempt: int, blob: bytes) -> None:
        """Unpack an attempt's files beside the final place and make them durable (the slow
        part; run it in a thread)."""
        tmp = self._staging(task, attempt)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        unpack_files(blob, tmp)
        if self.durable:
            fsync_tree(tmp)

    def promote(self, task: str, attempt: int, *, sync: bool = True) -> None:
        """Make a staged attempt the task's committed outputs: one atomic rename, then the
        rename itself made durable (see the module docstring). ``sync=False`` leaves the
        rename to the caller's ``sync_promotions`` (one fsync for a group of promotions,
        before their entries are committed)."""
        staged = self._staging(task, attempt)
        final = under(self.tasks, task)
        if not final.exists():
            os.rename(staged, final)
        elif exchange(staged, final):
            shutil.rmtree(staged, ignore_errors=True)  # now the previous attempt's folder
        else:
            old = under(self.tasks, f".{task}.old")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            staged.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        if sync:
            self.sync_promotions()

    def sync_promotions(self) -> None:
        """Make every rename into ``tasks/`` so far durable."""
        if self.durable:
            fsync_dir(self.tasks)

    def discard(self, task: str, attempt: int) -> None:
        shutil.rmtree(self._staging(task, attempt), ignore_errors=True)

    def _staging(self, task: str, attempt: int) -> Path:
        return under(self.tasks, f".{task}.{attempt}.tmp")

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
    app_id: str,
    spec: AppSpec,
    table: TaskTable,
    hosts: Mapping[str, str],
    *,
    times: TaskTimes | None = None,
    stopped_by: str = "",
    app_outcome: dict[str, object] | None = None,
) -> dict[str, object]:
    """``results.json``: DESIGN.md's fields, unchanged, plus what results_detail.py adds
    (``reason``, ``started``/``ended``, the finer ``state``, the app's ``outcome``);
    ``hosts`` maps node ids to names."""
    tasks: list[object] = []
    for rec in table.records():
        started, ended = times.of(rec.id) if times is not None else (None, None)
        tasks.append(
            {
                "id": rec.id,
                "state": task_state(rec, stopped_by),
                "exit_code": rec.exit_code,
                "attempts": rec.attempts,
                "worker": hosts.get(rec.worker, rec.worker) if rec.worker else None,
                "seconds": None if rec.seconds is None else round(rec.seconds, 3),
                "reason": rec.reason,
                "started": started,
                "ended": ended,
            }
        )
    doc: dict[str, object] = {"app": app_id, "name": spec.name, "tasks": tasks}
    if app_outcome is not None:
        doc["outcome"] = app_outcome
    return doc


# --- durable file-system steps ---------------------------------------------------------------

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
_exchange_works = _renameat2 is not None


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``). False,
    nothing changed, where the system or the filesystem cannot; OSError on other errors."""
    global _exchange_works
    if not _exchange_works or _renameat2 is None:
        return False
    rc = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        _exchange_works = False
        log.warning(
            "atomic exchange of folders unsupported here (%s): two renames instead",
            os.strerror(err),
        )
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(top: Path) -> None:
    """fsync every regular file and folder under ``top`` (itself included), files first.
    Links are not followed (an extracted result holds none)."""
    for dirpath, _dirs, files in os.walk(top, topdown=False):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))
