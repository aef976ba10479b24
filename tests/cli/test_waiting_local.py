"""Apps wait for volunteers, saying why; `--wait-timeout` fails fast; `--dry-run` lists per
task how many volunteers fit, recruiting nothing. Real CLI processes and real local workers
on loopback (`--local`), no mDNS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CLI = (sys.executable, "-m", "bonjourgrid.cli")
HUGE = 1 << 40  # MB: no machine has this much memory


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BJGRID_")}


def app(tmp: Path, memory_mb: int = 0, n: int = 2) -> Path:
    d = tmp / "app"
    d.mkdir(exist_ok=True)
    tasks = [{"id": f"t{i}", "command": "echo hi > o.txt", "outputs": ["o.txt"]} for i in range(n)]
    tasks.append({"id": "big", "command": ["true"], "requirements": {"memory_mb": memory_mb}})
    (d / "app.json").write_text(json.dumps({"name": "w", "tasks": tasks}))
    return d


def run(cwd: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "submit", *args], cwd=cwd, env=env(), capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_wait_timeout_fails_fast_naming_the_requirement_nobody_meets(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = run(tmp_path, str(app(tmp_path, HUGE)), "--local", "1", "--wait-timeout", "3", "--json")
    took = time.monotonic() - t0
    assert r.returncode == 1, r.stderr[-3000:]  # the others ran; `big` was given up on
    doc = json.loads(r.stdout)
    rows = {t["id"]: t for t in doc["results"]["tasks"]}
    assert rows["t0"]["state"] == "done" and rows["big"]["state"] == "failed", rows
    assert f"memory_mb>={HUGE}" in r.stderr and "(1 seen)" in r.stderr, r.stderr[-2000:]
    assert took < 60


def test_without_wait_timeout_the_app_waits_saying_why_until_cancelled(tmp_path: Path) -> None:
    """The old behaviour failed the app after 20 s; now it waits (Ctrl-C cancels it), and
    does not keep a worker that its waiting task does not fit."""
    only_big = tmp_path / "only"
    only_big.mkdir()
    (only_big / "app.json").write_text(json.dumps({"name": "w", "tasks": [
        {"id": "small", "command": ["true"]},
        {"id": "big", "command": ["true"], "requirements": {"memory_mb": HUGE}}]}))  # fmt: skip
    proc = subprocess.Popen(
        [*CLI, "submit", str(only_big), "--local", "1"], cwd=tmp_path, env=env(),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(25)  # longer than the old recruit_timeout (20 s)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert f"waiting: no volunteer has memory_mb>={HUGE} (1 seen), for task big" in err, err
    # `small` ran; the worker it ran on was let go: a task that fits no worker holds none
    assert "done 1  running 0  waiting 1  failed 0  workers 0" in err, err


def test_dry_run_lists_per_task_how_many_volunteers_fit_and_recruits_nothing(
    tmp_path: Path,
) -> None:
    r = run(tmp_path, str(app(tmp_path, HUGE)), "--local", "2", "--dry-run", "--json")
    assert r.returncode == 3, r.stderr[-3000:]  # `big` could never run
    doc = json.loads(r.stdout)
    rows = {t["id"]: t for t in doc["tasks"]}
    assert doc["seen"] == 2
    assert rows["t0"] == {"id": "t0", "fit_now": 2, "could": 2, "reason": ""}
    assert rows["big"]["fit_now"] == 0 and rows["big"]["could"] == 0
    assert rows["big"]["reason"] == f"no volunteer has memory_mb>={HUGE} (2 seen)"
    assert not (tmp_path / "w-results").exists()  # nothing ran, nothing written


def test_dry_run_of_a_bad_app_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "app.json").write_text('{"name": "w", "tasks": [{"id": "../x", "command": "x"}]}')
    r = run(tmp_path, str(tmp_path / "app.json"), "--dry-run")
    assert r.returncode == 2 and "not a valid task id" in r.stderr, r.stderr


def test_bad_wait_timeouts_are_refused(tmp_path: Path) -> None:
    a = str(app(tmp_path))
    for bad in ("0", "-1", "nan", "soon"):
        r = run(tmp_path, a, "--local", "1", "--wait-timeout", bad)
        assert r.returncode == 2, (bad, r.stderr)
    d = tmp_path / "inapp"
    d.mkdir()
    (d / "app.json").write_text('{"name": "w", "wait_timeout": true, "tasks": '
                                '[{"id": "a", "command": "true"}]}')  # fmt: skip
    r = run(tmp_path, str(d), "--local", "1")
    assert r.returncode == 2 and "wait_timeout" in r.stderr, r.stderr
