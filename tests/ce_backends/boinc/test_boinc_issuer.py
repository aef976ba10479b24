"""The result-issuing model: hosts, assignment by CPUs, reports, loss, deadlines, reissue."""

from __future__ import annotations

import pytest

from bonjourgrid.ce_backends.boinc.issuer import (
    Failed,
    IssueError,
    Issuer,
    IssuerConfig,
    Job,
    Succeeded,
)
from bonjourgrid.ce_backends.boinc.scheduler import ReportedResult, SchedulerRequest

T0 = 1_700_000_000.0


def req(
    *,
    hostid: int = 1,
    cpid: str = "c1",
    name: str = "h2",
    ncpus: int = 2,
    work: bool = True,
    reported: tuple[ReportedResult, ...] = (),
    other: tuple[str, ...] = (),
) -> SchedulerRequest:
    return SchedulerRequest(
        authenticator="k", hostid=hostid, rpc_seqno=1, platforms=("x86_64-pc-linux-gnu",),
        host_cpid=cpid, domain_name=name, ncpus=ncpus, memory_bytes=8e9,
        cpu_req_secs=1.0 if work else 0.0, cpu_req_instances=0.0,
        work_req_seconds=1.0 if work else 0.0, has_code_sign_key=True,
        reported=reported, other_results=other,
    )  # fmt: skip


def ok(name: str, elapsed: float = 2.0) -> ReportedResult:
    return ReportedResult(name, 0, 5, elapsed)


def bad(name: str, status: int = -186) -> ReportedResult:
    return ReportedResult(
        name, status, 1, 0.0, "<error_code>-120 (RSA key check failed)</error_code>"
    )


def issuer(*jobs: Job, **cfg: float) -> Issuer:
    iss = Issuer(IssuerConfig(**cfg))  # type: ignore[arg-type]
    for j in jobs:
        iss.submit(j)
    return iss


def job(task: str, attempt: int = 1, **kw: object) -> Job:
    return Job(task, attempt, (), **kw)  # type: ignore[arg-type]


def test_new_host_gets_an_id_once_per_cpid() -> None:
    iss = issuer()
    first = iss.handle(req(hostid=0), T0)
    assert first.hostid == 1
    assert iss.handle(req(hostid=0, cpid="c2"), T0).hostid == 2
    assert iss.handle(req(hostid=0), T0).hostid == 1  # same CPID, same host
    assert iss.handle(req(hostid=1), T0).hostid is None  # never re-sent to a known host


@pytest.mark.parametrize(
    ("ncpus", "jobs", "issued"),
    [
        (2, [job("a"), job("b"), job("c")], ["a", "b"]),
        (1, [job("big", cpus=2), job("small")], ["small"]),
        (4, [job("big", cpus=2), job("x"), job("y"), job("z")], ["big", "x", "y"]),
        (2, [], []),
    ],
)
def test_assignment_fills_the_hosts_cpus_in_order(
    ncpus: int, jobs: list[Job], issued: list[str]
) -> None:
    iss = issuer(*jobs)
    d = iss.handle(req(ncpus=ncpus), T0)
    assert [a.result.split("_")[1] for a in d.assignments] == issued
    assert iss.pending == len(jobs) - len(issued)
    # Asking again while they run gives nothing more: the CPUs are taken.
    names = tuple(a.result for a in d.assignments)
    assert iss.handle(req(ncpus=ncpus, other=names), T0 + 1).assignments == ()


def test_no_work_asked_no_work_given() -> None:
    iss = issuer(job("a"))
    assert iss.handle(req(work=False), T0).assignments == ()


def test_assignment_fields() -> None:
    iss = issuer(job("t.x", attempt=3, timeout=10.0), grace=5.0, flops=1e9)
    (a,) = iss.handle(req(), T0).assignments
    assert ".." not in a.result and a.result.endswith("_3")
    assert a.output == a.result + "_out" and a.output_open_name == "bjg_out"
    assert a.deadline == T0 + 15 and a.fpops_bound == 15e9
    assert a.command_line == "--attempt 3"
    assert iss.result_of(a.output) == ("t.x", 3)


def test_success_is_reported_acked_and_forgotten() -> None:
    iss = issuer(job("a"))
    (a,) = iss.handle(req(), T0).assignments
    d = iss.handle(req(reported=(ok(a.result, 2.5),)), T0 + 3)
    assert d.acks == (a.result,)
    assert d.events == (Succeeded("a", 1, a.result, a.output, "h2", 2.5),)
    assert iss.result_of(a.output) is None and iss.running == 0


@pytest.mark.parametrize(
    ("retries", "reissued"),
    [(0, None), (1, 2)],
)
def test_client_error_fails_the_result_and_reissues_if_allowed(
    retries: int, reissued: int | None
) -> None:
    iss = issuer(job("a", retries=retries))
    (a,) = iss.handle(req(), T0).assignments
    d = iss.handle(req(reported=(bad(a.result),)), T0 + 1)
    (ev,) = d.events
    assert isinstance(ev, Failed) and ev.reissued == reissued
    assert "RSA key check failed" in ev.reason and d.acks == (a.result,)
    again = [x.command_line for x in d.assignments]
    assert again == ([] if reissued is None else ["--attempt 2"])


def test_a_result_the_client_no_longer_has_is_lost() -> None:
    iss = issuer(job("a"), job("b"))
    _, b = iss.handle(req(), T0).assignments
    d = iss.handle(req(other=(b.result,), work=False), T0 + 1)
    (ev,) = d.events
    assert isinstance(ev, Failed) and ev.task == "a" and "lost" in ev.reason


def test_results_the_project_dropped_are_aborted() -> None:
    iss = issuer(job("a"))
    (a,) = iss.handle(req(), T0).assignments
    assert iss.cancel("a", 1)
    d = iss.handle(req(other=(a.result, "stranger"), work=False), T0 + 1)
    assert d.aborts == (a.result, "stranger") and d.events == ()
    # The client then reports it aborted: acked, no event.
    d = iss.handle(req(reported=(bad(a.result, -221),)), T0 + 2)
    assert d.acks == (a.result,) and d.events == ()


def test_cancel_pending_and_unknown() -> None:
    iss = issuer(job("a"))
    assert iss.cancel("a", 1) and not iss.cancel("a", 1)
    assert iss.handle(req(), T0).assignments == ()


def test_deadline_expiry_fails_and_reissues() -> None:
    iss = issuer(job("a", timeout=10.0, retries=1), job("b"), grace=5.0, deadline=100.0)
    a, b = iss.handle(req(), T0).assignments
    assert iss.next_deadline() == T0 + 15
    assert iss.expire(T0 + 14) == ()
    (ev,) = iss.expire(T0 + 15)
    assert isinstance(ev, Failed) and ev.task == "a" and ev.reissued == 2
    assert "deadline" in ev.reason
    assert iss.next_deadline() == T0 + 100
    # The reissue goes to whoever asks next; the late report of the old one is just acked.
    d = iss.handle(req(hostid=2, cpid="c2", name="h3", other=()), T0 + 16)
    assert [x.command_line for x in d.assignments] == ["--attempt 2"]
    late = iss.handle(req(reported=(ok(a.result),), other=(b.result,)), T0 + 17)
    assert late.acks == (a.result,) and late.events == ()


def test_host_lost_fails_its_results_at_once() -> None:
    iss = issuer(job("a"), job("b"))
    iss.handle(req(ncpus=1), T0)
    iss.handle(req(hostid=2, cpid="c2", name="h3", ncpus=1), T0)
    (ev,) = iss.host_lost("h2")
    assert isinstance(ev, Failed) and ev.task == "a" and ev.host == "h2"
    assert iss.running == 1


def test_duplicate_attempt_is_refused() -> None:
    iss = issuer(job("a"))
    with pytest.raises(IssueError):
        iss.submit(job("a"))


def test_queue_per_cpu_lets_a_client_hold_the_next_task() -> None:
    iss = issuer(job("a"), job("b"), job("c"), queue_per_cpu=2)
    assert [a.command_line for a in iss.handle(req(ncpus=1), T0).assignments] == [
        "--attempt 1",
        "--attempt 1",
    ]
    assert iss.pending == 1


def test_a_lost_result_is_issued_again_as_the_same_attempt_then_fails() -> None:
    iss = issuer(job("a"), lost_reissues=1, deadline=10.0)
    (first,) = iss.handle(req(ncpus=1), T0).assignments
    (ev,) = iss.host_lost("h2")
    assert isinstance(ev, Failed) and ev.requeued and ev.reissued is None
    assert iss.attempts() == [("a", 1)]
    (second,) = iss.handle(req(hostid=2, cpid="c2", name="h3", ncpus=1), T0).assignments
    assert second.result != first.result and second.command_line == "--attempt 1"
    (ev,) = iss.expire(T0 + 10)  # lost again: the one reissue is used up
    assert isinstance(ev, Failed) and not ev.requeued and "deadline" in ev.reason
    assert iss.attempts() == []


def test_a_failed_report_is_not_a_loss() -> None:
    iss = issuer(job("a"), lost_reissues=3)
    (a,) = iss.handle(req(ncpus=1), T0).assignments
    (ev,) = iss.handle(req(ncpus=1, work=False, reported=(bad(a.result),)), T0).events
    assert isinstance(ev, Failed) and not ev.requeued and iss.attempts() == []


def test_result_names_carry_a_random_part() -> None:
    iss = issuer(job("t"), job("u"))
    names = [a.result for a in iss.handle(req(hostid=0), T0).assignments]
    assert len(names) == 2 and len({n.split("_")[0] for n in names}) == 2
    for n in names:
        seq, token = n.split("_")[0].split("-")
        assert seq.startswith("bjg") and len(token) == 16 and int(token, 16) >= 0
    fixed = Issuer(IssuerConfig(), token=lambda: "abc")
    fixed.submit(job("t.x", 2))
    (a,) = fixed.handle(req(hostid=0), T0).assignments
    assert (a.result, a.output) == ("bjg1-abc_t-x_2", "bjg1-abc_t-x_2_out")


def test_a_host_reports_and_loses_only_its_own_results() -> None:
    iss = issuer(job("t"))
    (a,) = iss.handle(req(hostid=0, cpid="c1", name="n1"), T0).assignments
    # Another account reports it, claims its host id, or its CPID: nothing happens to it.
    other = iss.handle(req(hostid=0, cpid="c2", name="n2", reported=(bad(a.result),)), T0)
    assert other.events == () and other.hostid == 2
    stolen = iss.handle(req(hostid=1, cpid="c2", name="n2", work=False), T0)
    assert stolen.events == () and stolen.hostid is not None and stolen.hostid != 1
    cpid = iss.handle(req(hostid=0, cpid="c1", name="n2", work=False), T0)
    assert cpid.events == () and cpid.hostid not in (None, 1)
    assert iss.attempts() == [("t", 1)]
    (done,) = iss.handle(req(hostid=1, name="n1", reported=(ok(a.result),)), T0).events
    assert isinstance(done, Succeeded) and done.host == "n1"
