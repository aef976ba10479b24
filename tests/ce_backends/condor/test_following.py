"""What the schedd's job states mean for an attempt (following.py), and the JobSpec of a
staged attempt (submission.py): pure, no daemons."""

from __future__ import annotations

from pathlib import Path

from bonjourgrid.app.spec import Requirements, TaskSpec
from bonjourgrid.ce_backends.condor.following import Ended, Job, Step, next_step, node_of
from bonjourgrid.ce_backends.condor.jobs import JobInfo, JobStatus
from bonjourgrid.ce_backends.condor.submission import OUTPUTS_TAR, job_spec


def _job(timeout: float | None = None) -> Job:
    return Job(TaskSpec("t", "true", timeout=timeout), 1, Path("/nowhere"), 7, 0.0)


def _info(status: JobStatus, *, exit_code: int | None = None, hold: str = "") -> JobInfo:
    return JobInfo(7, status, exit_code, 1, 2.5, hold, "")


def test_a_completed_job_ends_with_its_exit_code() -> None:
    assert next_step(_job(), _info(JobStatus.COMPLETED, exit_code=3), 1.0) == Ended(3, 2.5, "")


def test_a_held_job_is_removed_and_fails_with_the_reason() -> None:
    step = next_step(_job(), _info(JobStatus.HELD, hold="why"), 1.0)
    assert step == Ended(None, 2.5, "held by HTCondor: why", remove=True)


def test_the_timeout_counts_from_the_start_and_an_eviction_restarts_it() -> None:
    job = _job(timeout=10)
    assert next_step(job, _info(JobStatus.IDLE), 0.0) is Step.WAIT
    assert next_step(job, _info(JobStatus.RUNNING), 5.0) is Step.WAIT
    assert job.running_since == 5.0
    assert next_step(job, _info(JobStatus.IDLE), 12.0) is Step.EVICTED
    assert job.running_since is None
    assert next_step(job, _info(JobStatus.RUNNING), 20.0) is Step.WAIT
    assert next_step(job, _info(JobStatus.RUNNING), 29.0) is Step.WAIT
    assert next_step(job, _info(JobStatus.RUNNING), 31.0) == Ended(
        None, 11.0, "timed out after 10 s", remove=True
    )


def test_a_cancelled_job_is_forgotten_once_out_of_the_queue() -> None:
    job = _job()
    job.cancelled = True
    assert next_step(job, _info(JobStatus.RUNNING), 1.0) is Step.WAIT
    assert next_step(job, _info(JobStatus.REMOVED), 2.0) is Step.FORGET


def test_a_requeuing_job_waits_whatever_its_state() -> None:
    job = _job()
    job.requeuing = True
    assert next_step(job, _info(JobStatus.HELD, hold="lost"), 1.0) is Step.WAIT


def test_node_of_names_the_member_whose_startd_ran_the_job() -> None:
    members = {"n1": "169-254-3-2.bjgrid"}
    assert node_of(members, "slot1_1@169-254-3-2.bjgrid") == "n1"
    assert node_of(members, "slot1_1@169-254-3-9.bjgrid") is None


def test_the_job_spec_of_an_attempt() -> None:
    task = TaskSpec("t", ("./x",), env=(("A", "1"),), requirements=Requirements(cpus=2))
    spec = job_spec(task, 3, app_id="App_1", job_dir=Path("/j"), has_inputs=False)
    assert (spec.name, spec.inputs, spec.outputs, spec.max_retries) == ("t.3", [], [OUTPUTS_TAR], 0)
    assert (spec.cpus, spec.memory_mb) == (2, 64)
    assert spec.env["A"] == "1" and spec.env["BJGRID_ATTEMPT"] == "3"
    assert job_spec(task, 3, app_id="a", job_dir=Path("/j"), has_inputs=True).inputs == ["in/"]
