"""The BOINC owner policy's pure parts: a result the volunteer gave back (aborted through its
GUI RPC) is issued again as the same attempt, not failed, and only within the loss budget; a
task cannot pass its own failure off as a give-back; result names map back to attempts."""

from __future__ import annotations

from bonjourgrid.ce_backends.boinc.issuer import Failed, Issuer, IssuerConfig, Job
from bonjourgrid.ce_backends.boinc.scheduler import (
    EXIT_ABORTED_VIA_GUI,
    RESULT_ABORTED,
    ReportedResult,
    SchedulerRequest,
)
from bonjourgrid.ce_backends.boinc.worker import attempt_of

T0 = 1_700_000_000.0


def req(name: str, *, work: bool, reported: tuple[ReportedResult, ...] = ()) -> SchedulerRequest:
    return SchedulerRequest(
        authenticator="k", hostid=0, rpc_seqno=1, platforms=("x86_64-pc-linux-gnu",),
        host_cpid=f"cpid-{name}", domain_name=name, ncpus=1, memory_bytes=8e9,
        cpu_req_secs=1.0 if work else 0.0, cpu_req_instances=0.0,
        work_req_seconds=1.0 if work else 0.0, has_code_sign_key=True,
        reported=reported, other_results=(),
    )  # fmt: skip


def _issued(iss: Issuer, host: str) -> str:
    d = iss.handle(req(host, work=True), T0)
    assert len(d.assignments) == 1
    return d.assignments[0].result


def test_a_given_back_result_is_issued_again_elsewhere_as_the_same_attempt() -> None:
    iss = Issuer(IssuerConfig(lost_reissues=3))
    iss.submit(Job("long", 1, ()))
    first = _issued(iss, "busy")
    aborted = ReportedResult(first, EXIT_ABORTED_VIA_GUI, RESULT_ABORTED, 12.0)
    d = iss.handle(req("busy", work=False, reported=(aborted,)), T0 + 20)
    (event,) = d.events
    assert isinstance(event, Failed) and event.requeued and "given back" in event.reason
    assert d.assignments == ()  # the busy volunteer asks for no work: nothing comes back to it
    again = _issued(iss, "other")
    assert again != first and attempt_of(again) == "long#1"


def test_give_backs_stop_at_the_loss_budget() -> None:
    iss = Issuer(IssuerConfig(lost_reissues=1))
    iss.submit(Job("t", 1, ()))
    for host, requeued in (("a", True), ("b", False)):
        name = _issued(iss, host)
        aborted = ReportedResult(name, EXIT_ABORTED_VIA_GUI, RESULT_ABORTED, 1.0)
        (event,) = iss.handle(req(host, work=False, reported=(aborted,)), T0).events
        assert isinstance(event, Failed) and event.requeued is requeued


def test_a_task_exiting_203_is_a_failure_not_a_give_back() -> None:
    iss = Issuer(IssuerConfig(lost_reissues=3))
    iss.submit(Job("t", 1, ()))
    name = _issued(iss, "h")
    crashed = ReportedResult(name, EXIT_ABORTED_VIA_GUI, 3, 1.0)  # RESULT_COMPUTE_ERROR
    (event,) = iss.handle(req("h", work=False, reported=(crashed,)), T0).events
    assert isinstance(event, Failed) and not event.requeued


def test_attempt_of_reads_only_our_result_names() -> None:
    assert attempt_of("bjg12-0123456789abcdef_w-3_2") == "w-3#2"
    assert attempt_of("bjg1-ab_long_1") == "long#1"
    assert attempt_of("owners_own_result_1") is None
    assert attempt_of("bjg1-ab_../../x_1") is None
    assert attempt_of("bjg1-zz_t_1") is None
