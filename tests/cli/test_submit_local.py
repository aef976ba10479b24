"""`bjgrid submit --local N`: the real CLI in a subprocess, real worker processes on loopback.

No mDNS and no LAN: `--local` runs the same computing element on local `bjgrid join
--no-mdns` workers. Covers outputs, `--json`, `--output`, shell quoting of sweep values, task
environment and priority, predecessors' outputs, timeouts, retries and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

APPS = Path(__file__).resolve().parent.parent / "apps"
CLI = (sys.executable, "-m", "bonjourgrid.cli")
TIMEOUT = 90.0
SECRET = "do-not-leak-4417"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    cwd: Path

    @property
    def app(self) -> str:
        first = self.stdout.splitlines()[0] if self.stdout else ""
        m = re.fullmatch(r"app (\S+)", first)
        assert m, f"first stdout line is not 'app <ID>': {self.stdout[:300]!r}"
        return m.group(1)


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("BJGRID_")}
    e["BJGRID_TEST_SECRET"] = SECRET
    return e


def run_submit(cwd: Path, *args: str) -> Run:
    cwd.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [*CLI, "submit", *args], cwd=cwd, env=env(), capture_output=True, text=True,
        timeout=TIMEOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return Run(r.returncode, r.stdout, r.stderr, cwd)


DESIGN_FIELDS = {"id", "state", "exit_code", "attempts", "worker", "seconds"}
"""DESIGN.md's results.json task fields: kept, with their meaning; issue 14 adds the rest."""
ADDED_FIELDS = {"reason", "started", "ended"}
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def by_id(results: dict[str, object]) -> dict[str, dict[str, object]]:
    assert set(results) == {"app", "name", "tasks", "outcome"}
    outcome = results["outcome"]
    assert isinstance(outcome, dict) and set(outcome) == {"state", "reason", "started", "ended"}
    assert ISO.fullmatch(str(outcome["started"])) and ISO.fullmatch(str(outcome["ended"]))
    tasks = results["tasks"]
    assert isinstance(tasks, list)
    for t in tasks:
        assert set(t) == DESIGN_FIELDS | ADDED_FIELDS, t
        assert t["state"] in ("done", "failed", "cancelled", "skipped"), t
        if t["attempts"]:  # it ran here: its last attempt's wall-clock times
            assert ISO.fullmatch(str(t["started"])), t
        if t["state"] != "done":
            assert t["reason"], t  # never a bare `failed` with no reason
    return {str(t["id"]): t for t in tasks}


# --- an app that succeeds: default output folder, task environment and sandbox --------------


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Run:
    cwd = tmp_path_factory.mktemp("features")
    return run_submit(cwd, str(APPS / "features" / "app.json"), "--local", "2")


@pytest.fixture(scope="module")
def probe(features: Run) -> dict[str, object]:
    assert features.code == 0, features.stderr[-3000:]
    facts = json.loads((features.cwd / "features-results" / "probe" / "probe.json").read_text())
    assert isinstance(facts, dict)
    return facts


def test_local_submit_exits_0_and_writes_outputs_to_default_folder(features: Run) -> None:
    assert features.code == 0, features.stderr[-3000:]
    out = features.cwd / "features-results"  # ./<name>-results/ by default
    results = json.loads((out / "results.json").read_text())
    assert results["app"] == features.app and results["name"] == "features"
    tasks = by_id(results)
    assert set(tasks) == {"make-input", "probe", "quote"}
    assert all(t["state"] == "done" and t["exit_code"] == 0 for t in tasks.values()), tasks
    for tid in tasks:
        assert (out / tid / "stdout").is_file() and (out / tid / "stderr").is_file()
    assert (out / "make-input" / "data" / "input.txt").read_text() == "from-make-input\n"
    assert "Traceback" not in features.stderr


def test_sweep_value_is_shell_quoted_in_string_command(features: Run) -> None:
    assert features.code == 0, features.stderr[-3000:]
    quote = features.cwd / "features-results" / "quote"
    # Quoted: one argument, the literal value. Unquoted, `echo INJECTED` would have run.
    assert (quote / "quoted.txt").read_text() == "a b; echo INJECTED\n"
    assert "INJECTED" not in (quote / "stdout").read_text()


def test_task_gets_its_env_and_a_scrubbed_environment(probe: dict[str, object]) -> None:
    assert probe["greeting"] == "hello world"
    assert probe["secret"] is None
    assert "BJGRID_TEST_SECRET" not in probe["env_keys"]  # type: ignore[operator]


def test_task_runs_at_nice_19_in_its_own_process_group(probe: dict[str, object]) -> None:
    assert probe["nice"] == 19
    assert probe["own_group"] is True


def test_task_sees_predecessor_outputs_in_its_working_dir(probe: dict[str, object]) -> None:
    assert probe["input"] == "from-make-input\n"
    assert "probe.py" in probe["files"]  # type: ignore[operator]


# --- an app with failures, given as its folder, in --json mode and with --output ------------


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Run:
    cwd = tmp_path_factory.mktemp("failing")
    return run_submit(cwd, str(APPS / "failing"), "--local", "2", "--json", "--output", "chosen")


def test_json_mode_stdout_is_exactly_one_object_and_the_app_line_goes_to_stderr(
    failing: Run,
) -> None:
    doc = json.loads(failing.stdout)  # the whole of stdout: one JSON document
    assert isinstance(doc, dict)
    assert not failing.stdout.startswith("app ")
    assert f"app {doc['app']}" in failing.stderr.splitlines()
    assert {"app", "name", "outcome", "reason", "output", "exit_status", "results"} <= set(doc)
    assert doc["name"] == "failing" and doc["outcome"] == "finished"
    assert doc["exit_status"] == failing.code == 1
    assert doc["results"]["app"] == doc["app"]
    assert "running" in failing.stderr, failing.stderr
    on_disk = json.loads((failing.cwd / "chosen" / "results.json").read_text())
    assert on_disk == doc["results"]


def test_json_mode_bad_input_is_still_one_json_object(tmp_path: Path) -> None:
    """Hostile input under --json: a script parsing stdout whole gets the error, not junk."""
    (tmp_path / "app.json").write_text('{"name": "x", "tasks": [')
    r = run_submit(tmp_path, str(tmp_path / "app.json"), "--local", "1", "--json")
    assert r.code == 2
    doc = json.loads(r.stdout)
    assert doc["exit_status"] == 2 and "invalid JSON" in doc["error"], doc
    assert "Traceback" not in r.stderr


def test_output_option_is_respected(failing: Run) -> None:
    assert (failing.cwd / "chosen" / "results.json").is_file()
    assert (failing.cwd / "chosen" / "ok-1" / "ok.txt").read_text() == "ok 1\n"
    assert not (failing.cwd / "failing-results").exists()


def test_failing_task_is_retried_then_failed_and_the_rest_finish(failing: Run) -> None:
    assert failing.code == 1, failing.stderr[-3000:]
    out = failing.cwd / "chosen"
    tasks = by_id(json.loads((out / "results.json").read_text()))
    bad = tasks["bad"]
    assert bad["state"] == "failed" and bad["exit_code"] == 3 and bad["attempts"] == 2, bad
    for i in (1, 2, 3):
        assert tasks[f"ok-{i}"]["state"] == "done", tasks
        assert (out / f"ok-{i}" / "ok.txt").read_text() == f"ok {i}\n"
    assert "bad attempt 2 failing on purpose" in (out / "bad" / "stderr").read_text()


def test_task_over_its_timeout_is_killed_and_failed(failing: Run) -> None:
    out = failing.cwd / "chosen"
    hang = by_id(json.loads((out / "results.json").read_text()))["hang"]
    assert hang["state"] == "failed" and hang["attempts"] == 1, hang
    assert "timed out" in (out / "hang" / "stderr").read_text()


# --- Ctrl-C ---------------------------------------------------------------------------------


def test_ctrl_c_cancels_the_app_and_exits_130(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*CLI, "submit", str(APPS / "sleepy" / "app.json"), "--local", "2", "--output", "out"],
        cwd=tmp_path, env=env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # `app <ID>`: the app is accepted
        assert first.startswith("app "), (first, proc.stderr.read() if proc.stderr else "")
        time.sleep(1.5)  # tasks are running (30 x 0.3 s on 2 workers take ~4.5 s)
        assert proc.poll() is None, "the app ended before Ctrl-C"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["app"] == first.split()[1]
    tasks = by_id(results)
    assert len(tasks) == 30
    assert any(t["state"] != "done" for t in tasks.values()), "cancelled app has every task done"
    never_ran = [t for t in tasks.values() if t["attempts"] == 0]
    assert never_ran, "Ctrl-C after 1.5 s of 4.5: some tasks never started"
    for t in never_ran:  # reported as cancelled, with the reason, not as failed
        assert t["state"] == "cancelled" and t["reason"] == "cancelled by the user", t
    assert results["outcome"]["state"] == "cancelled"
