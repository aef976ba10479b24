"""HTCondor computing elements end to end (issue 5) on a virtual LAN: real `bjgrid` daemons,
real mDNS, real HTCondor daemons (collector, negotiator and schedd on the coordinator, a startd
on each recruited volunteer).

h0 submits (no `join`: its submit's private daemon coordinates and runs the CE's head),
h1..h4 volunteer with HTCondor available, h5 is a desktop that looks at the grid. The app
(tests/apps/condor20) has 20 tasks: 19 read an input file and write a nested output, and a
fan-in gathers them. Every check reads what the product recorded (outputs, results.json,
journals) or asks HTCondor itself (`condor_status` with the CE's own client config).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bonjourgrid.ce_backends.condor.coordinator import CLIENT_CONFIG, machine_name
from bonjourgrid.ce_backends.condor.installation import Installation, find
from bonjourgrid.testbed import Host, VirtualLan, available
from bonjourgrid.testbed.grid import Grid, reservations
from bonjourgrid.testbed.journal_view import journal_rows

pytestmark = pytest.mark.vlan

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
APP_DIR = Path(__file__).parents[1] / "apps" / "condor20"
N_TASKS = 20
VOLUNTEERS = 4
RUN_TIMEOUT = 120.0


def _require_condor() -> Installation:
    ok, reason = available()
    inst = find()
    if ok and inst is not None:
        return inst
    why = reason if not ok else "no HTCondor (run scripts/setup-condor)"
    if IN_CI:
        pytest.fail(f"HTCondor LAN tests cannot run in CI: {why}", pytrace=False)
    pytest.skip(f"HTCondor LAN tests: {why}")


class Lan:
    def __init__(self, lan: VirtualLan, inst: Installation) -> None:
        self.lan = lan
        self.inst = inst
        self.grid = Grid(lan)
        self.h0 = lan.hosts[0]
        self.volunteers = lan.hosts[1 : VOLUNTEERS + 1]
        self.observer = lan.hosts[VOLUNTEERS + 1]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    inst = _require_condor()
    lan = VirtualLan(VOLUNTEERS + 2, base_dir=tmp_path_factory.mktemp("condor-lan"))
    try:
        lan.start()
        s = Lan(lan, inst)
        s.grid.join_all(s.volunteers, "--slots", "1")
        s.grid.wait_idle(s.observer, s.volunteers)
        yield s
    finally:
        lan.close()


def copy_app(dest: Path, **changes: object) -> Path:
    shutil.copytree(APP_DIR, dest)
    app = dest / "app.json"
    app.write_text(json.dumps({**json.loads(app.read_text()), **changes}))
    return app


@pytest.fixture(scope="module")
def embedded(shared: Lan, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the same app on the embedded task farm (its output folder)."""
    base = tmp_path_factory.mktemp("embedded")
    out = base / "out"
    app = copy_app(base / "app")
    r = shared.grid.cli(
        shared.h0, "submit", str(app), "--backend", "embedded", "--output", str(out),
        timeout=RUN_TIMEOUT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    shared.grid.wait_idle(shared.observer, shared.volunteers, timeout=60)
    return out


def files_of(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "results.json"
    }


_BY_NATURE = ("seconds", "worker", "started", "ended")
"""Task fields that differ between two runs by nature: timings and workers."""


def comparable(results: dict[str, Any]) -> list[dict[str, Any]]:
    """results.json's tasks without what differs by nature (timings, worker names)."""
    return sorted(
        ({k: v for k, v in t.items() if k not in _BY_NATURE} for t in results["tasks"]),
        key=lambda t: str(t["id"]),
    )


def condor_status(s: Lan, scratch: Path) -> list[str] | None:
    """`condor_status` run on the coordinator with the CE's own client config (its pool, its
    submitter token); the machines listed, or None while no CE runs there."""
    # Only where the CE lives (state/apps/<app>/ce/): a walk of the whole state dir races
    # the coordinator's own temporary files (a result being unpacked vanishes mid-walk).
    found = sorted(s.h0.home.glob(f"state/apps/*/ce/{CLIENT_CONFIG}"))
    if not found:
        return None
    ce_root = found[0].parent
    scratch.mkdir(exist_ok=True)
    try:
        shutil.copyfile(ce_root / CLIENT_CONFIG, scratch / CLIENT_CONFIG)
    except OSError:  # the CE just ended
        return None
    tokens = ce_root / "client-tokens"
    binds = [scratch, tokens]
    argv = s.inst.argv(
        ["condor_status", "-af", "Machine"],
        env={"CONDOR_CONFIG": str(scratch / CLIENT_CONFIG)},
        binds=binds,
    )
    try:
        r = s.h0.run(argv, timeout=20)
    finally:
        s.inst.forget_binds(binds)
    if r.returncode != 0:
        # The CE ending meanwhile (its tokens gone, its collector already stopped), or its
        # collector too busy to answer on a loaded machine: no sample this time, ask again.
        transient = (b"Failed to connect", b"communication error")
        if not tokens.exists() or any(t in r.stderr for t in transient):
            return None
        raise AssertionError(f"condor_status failed: {r.stderr.decode(errors='replace')}")
    return sorted(set(r.stdout.decode().split()))


def condor_processes(hosts: list[Host]) -> dict[str, list[str]]:
    """Every HTCondor process still running in the hosts the test made (by PID)."""
    left: dict[str, list[str]] = {}
    for h in hosts:
        for pid in h.pids():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "condor_" in cmd:
                left.setdefault(h.name, []).append(f"{pid}: {cmd[:120]}")
    return left


def recruited(hosts: list[Host], app: str) -> list[Host]:
    return [h for h in hosts if any(e.get("app") == app for e in reservations(h))]


def first_line(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        chunk = proc.stdout.read1(1)  # type: ignore[attr-defined]
        if not chunk:
            break
        line += chunk
    text = line.decode().strip()
    assert text.startswith("app "), f"no 'app <ID>' line: {text!r}"
    return text.split()[1]


def test_condor_ce_gives_the_embedded_results_with_exactly_the_recruited_pool(
    shared: Lan, embedded: Path, tmp_path: Path
) -> None:
    s = shared
    out = tmp_path / "out"
    app_json = copy_app(tmp_path / "app")
    t0 = time.monotonic()
    proc = s.grid.popen_cli(
        s.h0, "submit", str(app_json), "--backend", "condor", "--output", str(out),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    app = first_line(proc)
    samples: list[list[str]] = []
    while proc.poll() is None and time.monotonic() - t0 < RUN_TIMEOUT:
        seen = condor_status(s, tmp_path / "status")
        if seen is not None:
            samples.append(seen)
        time.sleep(0.3)
    try:
        _, err = proc.communicate(timeout=max(1.0, RUN_TIMEOUT - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"submit did not end: {err.decode(errors='replace')[-3000:]}")
    run_s = time.monotonic() - t0
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]

    # Outputs and results.json are those of the embedded farm.
    assert files_of(out) == files_of(embedded)
    got = json.loads((out / "results.json").read_text())
    want = json.loads((embedded / "results.json").read_text())
    assert got["name"] == want["name"] and got["app"] == app
    assert comparable(got) == comparable(want)
    assert len(got["tasks"]) == N_TASKS and all(t["state"] == "done" for t in got["tasks"])

    # The pool held exactly the recruited volunteers, and the results name them.
    hosts = recruited(s.volunteers, app)
    assert hosts, "no volunteer recorded a reservation for the app"
    pool = sorted(machine_name(h.address) for h in hosts)
    assert samples, "condor_status never answered during the run"
    for seen in samples:
        assert set(seen) <= set(pool), f"a machine outside the CE in the pool: {seen} vs {pool}"
    assert pool in samples, f"the pool never listed every recruited machine: {samples}"
    assert {t["worker"] for t in got["tasks"]} <= {h.name for h in hosts}

    # Afterwards: the volunteers are idle, no HTCondor process and no CE file remains.
    s.grid.wait_idle(s.observer, s.volunteers, timeout=30)
    assert condor_processes(s.lan.hosts) == {}
    left = [p for h in s.lan.hosts for p in h.home.rglob("condor_config")]
    assert left == [], left
    print(f"condor app: {run_s:.1f} s, {len(samples)} pool samples, recruited {pool}")


def finishes(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["k"] == "finish" and e["exit_code"] == 0]


def fetch_results(s: Lan, app: str, out: Path) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        r = s.grid.cli(s.observer, "results", app, "--output", str(out), timeout=90)
        last = r.stderr.decode(errors="replace")
        if r.returncode in (0, 1):
            assert r.returncode == 0, last
            results: dict[str, Any] = json.loads((out / "results.json").read_text())
            return results
        assert r.returncode in (3, 4), last
        time.sleep(0.5)
    pytest.fail(f"app {app} not complete after {RUN_TIMEOUT} s: {last[-2000:]}")


def test_coordinator_kill9_with_one_replica_completes_every_result_once(
    shared: Lan, embedded: Path, tmp_path: Path
) -> None:
    s = shared
    s.grid.wait_idle(s.observer, s.volunteers, timeout=60)
    app_json = copy_app(tmp_path / "app", name="condor20-kill", replicas=1)
    proc = s.grid.popen_cli(
        s.h0, "submit", str(app_json), "--backend", "condor", "--output", str(tmp_path / "never"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    app = first_line(proc)
    # Kill once the CE has committed a few results (so some are done, most are not).
    deadline = time.monotonic() + RUN_TIMEOUT
    done_before = 0
    while time.monotonic() < deadline:
        done_before = len(finishes(journal_rows(s.h0, app)[1]))
        if done_before >= 3:
            break
        time.sleep(0.1)
    s.h0.kill9()  # the coordinator's processes: submit, its daemon, the CE's head
    assert 3 <= done_before < N_TASKS, f"kill landed outside the run: {done_before} done"

    out = tmp_path / "out"
    results = fetch_results(s, app, out)
    ids = Counter(t["id"] for t in results["tasks"])
    assert len(ids) == N_TASKS and set(ids.values()) == {1}, ids
    assert all(t["state"] == "done" for t in results["tasks"]), results["tasks"]
    assert files_of(out) == files_of(embedded)

    final = []
    for h in s.volunteers:
        row, entries = journal_rows(h, app)
        if row is not None and row["role"] == "finished":
            final.append((h.name, row, entries))
    assert final, "no volunteer finished the app as its new coordinator"
    for _name, row, entries in final:
        assert row["term"] == 2, row
        per_task = Counter(e["task"] for e in finishes(entries))
        assert len(per_task) == N_TASKS and set(per_task.values()) == {1}, per_task
    s.grid.wait_idle(s.observer, s.volunteers, timeout=60)
    # The new coordinator stops its head after it committed the end (a graceful condor_off
    # takes seconds on a loaded machine): nothing may be left once it is done.
    deadline = time.monotonic() + 60
    while condor_processes(s.lan.hosts) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert condor_processes(s.lan.hosts) == {}
    left = [p for h in s.volunteers for p in h.home.rglob("condor_config")]
    assert left == [], left
    print(f"{done_before} results committed before the kill; finished by {[f[0] for f in final]}")
