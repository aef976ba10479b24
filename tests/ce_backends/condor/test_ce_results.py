"""How the condor CE turns a finished job's files into a TaskResult, and the wrapper that
packs the declared outputs (no daemons: real files, real /bin/sh and tar)."""

from __future__ import annotations

import asyncio
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from bonjourgrid.app.bundle import sha256_hex, unpack_files
from bonjourgrid.app.spec import TaskSpec
from bonjourgrid.ce_backends.condor.coordinator import CondorJoin, ce_id_for, machine_name
from bonjourgrid.ce_backends.condor.following import Job
from bonjourgrid.ce_backends.condor.results import collect_result
from bonjourgrid.ce_backends.condor.submission import OUTPUTS_TAR, wrapper_argv
from bonjourgrid.ce_backends.condor.worker import CondorWorker
from bonjourgrid.control.messages import TaskResult


def _collect(job: Job, exit_code: int | None, seconds: float, error: str) -> TaskResult:
    """What the coordinator of app ``App_1`` makes of the finished ``job``'s files."""
    return collect_result(
        "App_1", job.task, job.attempt, job.dir, exit_code=exit_code, seconds=seconds, error=error
    )


def _run_wrapper(task: TaskSpec, cwd: Path) -> int:
    return subprocess.run(
        list(wrapper_argv(task)), cwd=cwd, env={"PATH": "/usr/bin:/bin"}
    ).returncode


def _files(blob: bytes, dest: Path) -> dict[str, str]:
    return {name: (dest / name).read_text() for name in unpack_files(blob, dest)}


def test_the_wrapper_keeps_the_exit_code_and_packs_nested_outputs(tmp_path: Path) -> None:
    task = TaskSpec("t", "mkdir -p a/b && echo x > a/b/o.txt && echo y > 'odd name' && exit 5",
                    outputs=("a/b/o.txt", "odd name", "missing"))  # fmt: skip
    assert _run_wrapper(task, tmp_path) == 5
    with tarfile.open(tmp_path / OUTPUTS_TAR) as tar:
        assert sorted(m.name for m in tar if m.isfile()) == ["a/b/o.txt", "odd name"]


def test_the_wrapper_sets_home_to_the_scratch_dir_unless_the_task_does(tmp_path: Path) -> None:
    assert _run_wrapper(TaskSpec("t", 'echo "$HOME" > h', outputs=("h",)), tmp_path) == 0
    assert (tmp_path / "h").read_text().strip() == str(tmp_path)
    assert wrapper_argv(TaskSpec("t", ("./x", "a b")))[-2:] == ("./x", "a b")


def test_a_successful_job_brings_back_logs_and_declared_outputs(tmp_path: Path) -> None:
    task = TaskSpec("t", "true", outputs=("d/out.txt",))
    job = Job(task, 2, tmp_path / "job", 7, 0.0)
    job.dir.mkdir()
    assert _run_wrapper(TaskSpec("t", "mkdir d; echo hi > d/out.txt", outputs=task.outputs),
                        job.dir) == 0  # fmt: skip
    (job.dir / "stdout").write_text("out\n")
    r = _collect(job, 0, 1.5, "")
    assert (r.app, r.task, r.attempt, r.exit_code, r.seconds, r.error) == (
        "App_1",
        "t",
        2,
        0,
        1.5,
        "",
    )
    assert r.outputs_sha256 == sha256_hex(r.outputs)
    assert _files(r.outputs, tmp_path / "x") == {
        "stdout": "out\n",
        "stderr": "",
        "d/out.txt": "hi\n",
    }


def test_exit_zero_without_a_declared_output_is_an_error_like_embedded(tmp_path: Path) -> None:
    task = TaskSpec("t", "true", outputs=("a", "b"))
    job = Job(task, 1, tmp_path / "job", 7, 0.0)
    job.dir.mkdir()
    _run_wrapper(TaskSpec("t", "echo 1 > a", outputs=task.outputs), job.dir)
    r = _collect(job, 0, 0.1, "")
    assert r.error == "declared output 'b' was not produced"
    files = _files(r.outputs, tmp_path / "x")
    assert files["a"] == "1\n" and "b" not in files
    assert files["stderr"].endswith("[bjgrid] declared output 'b' was not produced\n")


def test_a_failed_job_brings_back_only_its_logs(tmp_path: Path) -> None:
    job = Job(TaskSpec("t", "x", outputs=("a",)), 1, tmp_path / "job", 7, 0.0)
    job.dir.mkdir()
    (job.dir / "stderr").write_text("bad\n")
    _run_wrapper(TaskSpec("t", "echo 1 > a; exit 2", outputs=("a",)), job.dir)
    r = _collect(job, 2, 0.1, "")
    assert r.exit_code == 2 and r.error == ""
    assert _files(r.outputs, tmp_path / "x") == {"stdout": "", "stderr": "bad\n"}


def test_an_output_that_is_a_link_is_refused(tmp_path: Path) -> None:
    job = Job(TaskSpec("t", "x", outputs=("a",)), 1, tmp_path / "job", 7, 0.0)
    job.dir.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        link = tarfile.TarInfo("a")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    (job.dir / OUTPUTS_TAR).write_bytes(buf.getvalue())
    r = _collect(job, 0, 0.1, "")
    assert r.error.startswith("output refused:")
    assert set(_files(r.outputs, tmp_path / "x")) == {"stdout", "stderr"}


def test_held_jobs_report_no_exit_code_and_the_reason(tmp_path: Path) -> None:
    job = Job(TaskSpec("t", "x"), 1, tmp_path / "job", 7, 0.0)
    job.dir.mkdir()
    r = _collect(job, None, 0.0, "held by HTCondor: why")
    assert r.exit_code is None and r.error == "held by HTCondor: why"


def test_names() -> None:
    assert machine_name("169.254.3.2") == "169-254-3-2.bjgrid"
    a, b = ce_id_for("App_1.x"), ce_id_for("App_1.x")
    assert a != b and a.startswith("app-1-x-")
    assert all(c.isalnum() or c == "-" for c in a)


def test_a_worker_refuses_to_join_another_apps_pool(tmp_path: Path) -> None:
    w = CondorWorker("app1", tmp_path / "w", address="169.254.1.2", cpus=1)
    reply = asyncio.run(w.join(CondorJoin("app2", 1, "ce", "169.254.1.1", 9618, "t.o.k")))
    assert not reply.ok and "app1" in reply.error


def test_a_worker_without_htcondor_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BJGRID_CONDOR_ROOT", str(tmp_path / "nothing"))
    w = CondorWorker("app1", tmp_path / "w", address="169.254.1.2", cpus=1)
    reply = asyncio.run(w.join(CondorJoin("app1", 1, "ce", "169.254.1.1", 9618, "t.o.k")))
    assert not reply.ok and "no usable HTCondor" in reply.error
    asyncio.run(w.close())
    assert not (tmp_path / "w").exists()


def test_the_wrapper_always_leaves_the_declared_output_file(tmp_path: Path) -> None:
    # With no output file declared, HTCondor's starter waits ~1 s before every job starts.
    assert _run_wrapper(TaskSpec("t", "exit 4"), tmp_path) == 4
    assert (tmp_path / OUTPUTS_TAR).is_file()
