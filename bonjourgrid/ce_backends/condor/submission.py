"""A task attempt as an HTCondor job: its directory, its command wrapper and its `JobSpec`.

Job layout (``jobs/<task>.<attempt>/``, owned by the job user, seen at the same path by the
schedd): ``in/`` holds the app's files and the predecessors' outputs and is transferred as
the scratch directory's contents; the command runs under a tiny ``/bin/sh`` wrapper that
packs the declared outputs present into ``.bjg-outputs.tgz`` (results.py unpacks it).

`wrapper_argv` and `job_spec` are pure (tested without daemons); `stage_job_dir` is the one
part that writes files.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from bonjourgrid.app.argv import task_argv
from bonjourgrid.app.bundle import unpack_files
from bonjourgrid.ce_backends.condor import config
from bonjourgrid.ce_backends.condor.jobs import JobSpec

if TYPE_CHECKING:
    from bonjourgrid.app.spec import TaskSpec
    from bonjourgrid.ce_backends.condor.installation import Installation

OUTPUTS_TAR = ".bjg-outputs.tgz"
INPUT_DIR = "in"
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_MEMORY_MB = 64
"""HTCondor's request_memory for a task that names none (the slot's memory is the cap)."""


def wrapper_argv(task: TaskSpec) -> tuple[str, ...]:
    """The job's command line: the task's argv under a /bin/sh wrapper that sets HOME/TMPDIR
    to the scratch directory (unless the task's env does) and packs the declared outputs."""
    script = ': "${HOME:=$PWD}" "${TMPDIR:=$PWD}"; export HOME TMPDIR; "$@"; rc=$?'
    if task.outputs:
        names = " ".join(shlex.quote(o) for o in task.outputs)
        script += f"; tar czf {OUTPUTS_TAR} --ignore-failed-read -- {names} 2>/dev/null"
    else:  # still the declared output file: see JobSpec.outputs in job_spec
        script += f"; : > {OUTPUTS_TAR}"
    script += "; exit $rc"
    return ("/bin/sh", "-c", script, "sh", *task_argv(task))


def stage_job_dir(job_dir: Path, *, bundle: bytes, inputs: bytes, inst: Installation) -> bool:
    """Make ``job_dir`` afresh with the app's files and ``inputs`` in ``in/``, owned by the job
    user; returns whether ``in/`` holds anything (an empty folder is not transferred)."""
    shutil.rmtree(job_dir, ignore_errors=True)
    staged = job_dir / INPUT_DIR
    staged.mkdir(parents=True)
    if bundle:
        unpack_files(bundle, staged)
    if inputs:
        unpack_files(inputs, staged)
    owner = inst.user_id(config.JOB_USER)
    if owner is not None:  # the shadow writes the job's files as the job user
        for d, dirs, files in os.walk(job_dir):
            for name in [d, *(os.path.join(d, n) for n in dirs + files)]:
                os.chown(name, *owner)
    return any(staged.iterdir())


def job_spec(
    task: TaskSpec, attempt: int, *, app_id: str, job_dir: Path, has_inputs: bool
) -> JobSpec:
    """The job that runs ``attempt`` of ``task`` from its staged ``job_dir``."""
    env = {
        "PATH": SAFE_PATH,
        "LANG": "C.UTF-8",
        **task.env_dict(),
        "BJGRID_APP": app_id,
        "BJGRID_TASK": task.id,
        "BJGRID_ATTEMPT": str(attempt),
    }
    return JobSpec(
        name=f"{task.id}.{attempt}",
        argv=wrapper_argv(task),
        job_dir=job_dir,
        # "in/" (trailing slash): HTCondor transfers the folder's contents.
        inputs=[f"{INPUT_DIR}/"] if has_inputs else [],
        # Always one declared output file: with none (even an empty list), HTCondor's
        # starter waits ~1 s between the input transfer and the job's start (measured).
        outputs=[OUTPUTS_TAR],
        env=env,
        max_retries=0,
        cpus=task.requirements.cpus,
        memory_mb=task.requirements.memory_mb or DEFAULT_MEMORY_MB,
    )
