"""A finished HTCondor job's files, turned into the attempt's `TaskResult`.

The result tar is laid out like the embedded worker's (``stdout``, ``stderr``, and on exit 0
the declared outputs), and follows its rules: exit 0 with a declared output missing is an
error, a link among the outputs is refused. The job brings back ``stdout``/``stderr`` and
the wrapper's ``.bjg-outputs.tgz`` (submission.py) into its directory. Files only: no
daemon, no event loop (the coordinator runs it in a worker thread).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from bonjourgrid.app.bundle import BundleError, pack_files, sha256_hex, unpack_files
from bonjourgrid.ce_backends.condor.submission import OUTPUTS_TAR
from bonjourgrid.control.messages import TaskResult

if TYPE_CHECKING:
    from bonjourgrid.app.spec import TaskSpec


def collect_result(
    app_id: str,
    task: TaskSpec,
    attempt: int,
    job_dir: Path,
    *,
    exit_code: int | None,
    seconds: float,
    error: str,
) -> TaskResult:
    """The attempt's TaskResult: stdout, stderr, and on exit 0 its declared outputs."""
    res = job_dir / ".result"
    shutil.rmtree(res, ignore_errors=True)
    res.mkdir()
    present: list[str] = []
    if exit_code == 0 and not error and task.outputs:
        present, error = _unpack_outputs(job_dir / OUTPUTS_TAR, res, task.outputs)
    for name in ("stdout", "stderr"):
        src = job_dir / name
        if src.is_file():
            shutil.copyfile(src, res / name)
        else:
            (res / name).touch()
    if error:
        with open(res / "stderr", "a") as f:
            f.write(f"\n[bjgrid] {error}\n")
    blob = pack_files(res, ["stdout", "stderr", *present])
    return TaskResult(
        app=app_id,
        task=task.id,
        attempt=attempt,
        exit_code=exit_code,
        seconds=float(seconds),
        error=error,
        outputs=blob,
        outputs_sha256=sha256_hex(blob),
    )


def _unpack_outputs(tar: Path, dest: Path, outputs: tuple[str, ...]) -> tuple[list[str], str]:
    """Unpack the job's outputs archive into ``dest``: (outputs present, error or '')."""
    try:
        blob = tar.read_bytes()
    except OSError:
        return [], "the job's outputs did not come back"
    try:
        unpack_files(blob, dest / ".outputs")
    except BundleError as e:
        shutil.rmtree(dest / ".outputs", ignore_errors=True)
        return [], f"output refused: {e}"
    present, error = [], ""
    for rel in outputs:
        src = dest / ".outputs" / rel
        if os.path.lexists(src):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest / rel)
            present.append(rel)
        else:
            error = error or f"declared output {rel!r} was not produced"
    shutil.rmtree(dest / ".outputs", ignore_errors=True)
    return present, error
