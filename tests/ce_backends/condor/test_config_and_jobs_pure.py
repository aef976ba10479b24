"""Pure parts of the condor backend: generated configs, submit descriptions, state table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bonjourgrid.ce_backends.condor.config import (
    CeNames,
    client_params,
    execute_config,
    head_config,
)
from bonjourgrid.ce_backends.condor.jobs import (
    TRANSLATE,
    JobSpec,
    JobStatus,
    condor_arguments,
    condor_environment,
    job_info,
    submit_description,
    task_state,
)
from bonjourgrid.states.taskstate import TaskState

NAMES = CeNames("app42")


def _head() -> str:
    return head_config(
        NAMES,
        address="169.254.3.1",
        port=9700,
        local_dir=Path("/ce/head/local"),
        key_file=Path("/ce/head/keys/POOL"),
        token_dir=Path("/ce/head/tokens"),
    )


def _execute() -> str:
    return execute_config(
        NAMES,
        address="169.254.3.2",
        head_address="169.254.3.1",
        head_port=9700,
        local_dir=Path("/ce/w/local"),
        token_dir=Path("/ce/w/tokens"),
        cpus=2,
        memory_mb=512,
    )


def _params(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def test_head_points_at_its_own_address_and_runs_the_central_manager() -> None:
    p = _params(_head())
    assert p["CONDOR_HOST"] == "169.254.3.1:9700"
    assert p["DAEMON_LIST"] == "MASTER, COLLECTOR, NEGOTIATOR, SCHEDD"
    assert p["LOCAL_DIR"] == "/ce/head/local"
    assert p["NO_DNS"] == "True"
    assert p["NEGOTIATOR_CYCLE_DELAY"] == "1"  # the hidden 20 s default
    assert p["SEC_TOKEN_POOL_SIGNING_KEY_FILE"] == "/ce/head/keys/POOL"


@pytest.mark.parametrize("text", [_head(), _execute()], ids=["head", "execute"])
def test_security_is_tokens_only_and_never_open(text: str) -> None:
    p = _params(text)
    assert "CLAIMTOBE" not in " ".join(p.values())
    assert p["SEC_DEFAULT_AUTHENTICATION_METHODS"] == "IDTOKENS"
    assert p["SEC_CLIENT_AUTHENTICATION_METHODS"] == "IDTOKENS"
    assert p["SEC_DEFAULT_AUTHENTICATION"] == "REQUIRED"
    assert p["SEC_READ_AUTHENTICATION"] == "REQUIRED"
    assert p["TRUST_DOMAIN"] == "app42.bjgrid"
    for key, value in p.items():
        if key.startswith("ALLOW_"):
            for entry in value.split():
                # every entry names an identity of this CE; no bare host or "*" patterns
                assert re.fullmatch(r"[\w*-]+@[\w.-]*app42\.bjgrid(/[\d.]+)?", entry), entry


def test_only_the_ces_workers_may_advertise_a_startd() -> None:
    p = _params(_head())
    assert p["ALLOW_ADVERTISE_STARTD"] == "*@workers.app42.bjgrid"
    assert "workers" not in p["ALLOW_DAEMON"] + p["ALLOW_NEGOTIATOR"] + p["ALLOW_WRITE"]


def test_execute_node_holds_no_key_and_obeys_only_the_head() -> None:
    text = _execute()
    p = _params(text)
    assert "SIGNING_KEY" not in text and "PASSWORD" not in text
    assert p["DAEMON_LIST"] == "MASTER, STARTD"
    assert p["COLLECTOR_HOST"] == "$(CONDOR_HOST)" and p["CONDOR_HOST"] == "169.254.3.1:9700"
    assert p["ALLOW_DAEMON"] == "condor@app42.bjgrid/169.254.3.1"
    assert p["NUM_CPUS"] == "2" and p["JOB_RENICE_INCREMENT"] == "19"


def test_identities_are_distinct_per_role_and_sanitised() -> None:
    assert NAMES.head == "condor@app42.bjgrid"
    assert NAMES.submitter == "bjgrid@app42.bjgrid"
    assert NAMES.worker("ab12.cd") == "ab12-cd@workers.app42.bjgrid"
    with pytest.raises(ValueError):
        NAMES.worker("")


def test_client_params_use_tokens_and_the_heads_address() -> None:
    p = client_params(NAMES, head_address="169.254.3.1", head_port=9700, token_dir=Path("/t"))
    assert p["COLLECTOR_HOST"] == "169.254.3.1:9700"
    assert p["SEC_CLIENT_AUTHENTICATION_METHODS"] == "IDTOKENS"
    assert p["SEC_TOKEN_DIRECTORY"] == "/t"


def test_submit_description_declares_outputs_even_when_there_are_none() -> None:
    spec = JobSpec("t1", ["/bin/sh", "-c", "echo hi"], Path("/jobs/t1"))
    sub = submit_description(spec)
    assert sub["transfer_output_files"] == ""  # removes HTCondor's 1 s sleep
    assert sub["transfer_executable"] == "false"
    assert sub["output"] == "/jobs/t1/stdout" and sub["error"] == "/jobs/t1/stderr"


def test_submit_description_transfers_inputs_and_retries() -> None:
    spec = JobSpec(
        "t2", ["run.sh", "x"], Path("/j"), inputs=["run.sh", "data.txt"],
        outputs=["out/a.txt", "b"], env={"A": "1 2"}, max_retries=3, cpus=2,
    )  # fmt: skip
    sub = submit_description(spec)
    assert sub["transfer_executable"] == "true"
    assert sub["transfer_input_files"] == "data.txt"
    assert sub["transfer_output_files"] == "out/a.txt,b"
    assert sub["max_retries"] == "3" and sub["request_cpus"] == "2"
    assert sub["environment"] == "\"A='1 2'\""


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x", "a,b", ""])
def test_submit_description_refuses_paths_outside_the_job(bad: str) -> None:
    with pytest.raises(ValueError):
        submit_description(JobSpec("t", ["/bin/true"], Path("/j"), outputs=[bad]))


def test_arguments_quote_spaces_and_quotes() -> None:
    assert condor_arguments(["a b", "it's", 'say "x"']) == "\"'a b' 'it''s' 'say \"\"x\"\"'\""
    with pytest.raises(ValueError):
        condor_environment({"A B": "x"})


def test_every_htcondor_status_translates() -> None:
    assert set(TRANSLATE) == set(JobStatus)
    assert task_state(1) is TaskState.READY
    assert task_state(2) is TaskState.RUNNING
    assert task_state(6) is TaskState.RUNNING
    assert task_state(4, 0) is TaskState.DONE
    assert task_state(4, 3) is TaskState.FAILED
    assert task_state(5) is TaskState.FAILED
    assert task_state(3) is TaskState.FAILED


def test_job_info_reports_a_signal_as_128_plus_signal() -> None:
    ad = {"ClusterId": 7, "JobStatus": 4, "ExitBySignal": True, "ExitSignal": 9}
    info = job_info(ad)
    assert info.exit_code == 137 and info.state is TaskState.FAILED
