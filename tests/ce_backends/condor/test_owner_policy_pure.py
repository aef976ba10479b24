"""The HTCondor owner policy's pure parts: the startd's policy lines, the cron script that
publishes the owner's state, and what ``CondorWorker.running`` believes of a job's ad."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from bonjourgrid.ce_backends.condor import config
from bonjourgrid.ce_backends.condor.worker import OWNER_FILE, CondorWorker, task_of


def _execute(tmp: Path, **owner: Path) -> str:
    return config.execute_config(
        config.CeNames("ce1"),
        address="169.254.0.2",
        head_address="169.254.0.1",
        head_port=9618,
        local_dir=tmp / "local",
        token_dir=tmp / "tokens",
        cpus=2,
        memory_mb=512,
        **owner,
    )


def _lines(text: str) -> dict[str, str]:
    return dict(
        (k.strip(), v.strip())
        for k, _, v in (ln.partition("=") for ln in text.splitlines())
        if not k.startswith("#") and v
    )


def test_execute_config_suspends_continues_and_evicts_on_the_owner_attribute(
    tmp_path: Path,
) -> None:
    conf = _lines(_execute(tmp_path, owner_file=tmp_path / "owner", owner_script=tmp_path / "s.sh"))
    assert conf["POLLING_INTERVAL"] == "1"
    assert conf["WANT_SUSPEND"] == "True"
    assert "BjgOwner" in conf["SUSPEND"] and "busy" in conf["SUSPEND"]
    assert conf["CONTINUE"].startswith("!") and conf["START"].startswith("!")
    assert conf["PREEMPT"] == 'BjgOwner =?= "gone"'
    assert conf["STARTD_CRON_BJGOWNER_ARGS"] == str(tmp_path / "owner")
    assert conf["STARTD_CRON_BJGOWNER_MODE"] == "WaitForExit"


def test_execute_config_without_owner_file_never_suspends(tmp_path: Path) -> None:
    conf = _lines(_execute(tmp_path))
    assert conf["SUSPEND"] == "False" and conf["PREEMPT"] == "False" and conf["START"] == "True"
    assert "STARTD_CRON_JOBLIST" not in conf


def test_owner_script_publishes_each_change_once_and_unknown_words_as_ok(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text(config.OWNER_SCRIPT)
    owner = tmp_path / "owner"
    owner.write_text("busy\n")
    proc = subprocess.Popen(["/bin/sh", str(script), str(owner)], stdout=subprocess.PIPE)
    try:
        time.sleep(0.5)
        owner.write_text("$(touch /tmp/pwned) gone\n")  # not a word it knows: ok
        time.sleep(0.5)
        owner.write_text("gone\n")
        time.sleep(0.5)
    finally:
        proc.kill()
        out, _ = proc.communicate()
    assert out.decode().split("\n") == [
        'BjgOwner = "busy"',
        "-",
        'BjgOwner = "ok"',
        "-",
        'BjgOwner = "gone"',
        "-",
        "",
    ]


def test_task_of_reads_the_job_name_and_refuses_malformed_ones() -> None:
    assert task_of('Owner = "bjgrid"\nBjgridTask = "w-1.2"\n') == "w-1#2"
    assert task_of('BjgridTask = "a.b.c.7"') == "a.b.c#7"
    assert task_of('BjgridTask = "../../etc.1"') is None
    assert task_of('BjgridTask = "x.1" || true') is None
    assert task_of('BjgridTask = "' + "x" * 65 + '.1"') is None
    assert task_of("JobStatus = 2") is None


def test_running_ignores_ads_of_dead_starters_and_forged_names(tmp_path: Path) -> None:
    w = CondorWorker("app", tmp_path, address="169.254.0.2", cpus=1)
    role = tmp_path / "startd-ce1"
    execute = role / "local" / "execute"
    w._role_dir = role
    w._daemons = object()  # type: ignore[assignment]  # a startd "runs"
    live = execute / f"dir_{os.getpid()}"
    live.mkdir(parents=True)
    (live / ".job.ad").write_text('BjgridTask = "long.3"\n')
    dead = execute / "dir_999999999"
    dead.mkdir()
    (dead / ".job.ad").write_text('BjgridTask = "ghost.1"\n')
    assert w.running() == ["long#3"]
    (live / ".job.ad").write_text('BjgridTask = "/etc/passwd.1"\n')  # rewritten by the job
    assert w.running() == []


def test_suspend_resume_and_give_back_write_the_owner_file(tmp_path: Path) -> None:
    import asyncio

    w = CondorWorker("app", tmp_path, address="169.254.0.2", cpus=1)
    w._role_dir = tmp_path
    w.suspend()
    assert (tmp_path / OWNER_FILE).read_text() == "busy\n"
    w.resume()
    assert (tmp_path / OWNER_FILE).read_text() == "ok\n"
    assert asyncio.run(w.give_back("owner")) == []  # nothing runs: nothing given
    assert (tmp_path / OWNER_FILE).read_text() == "gone\n"
