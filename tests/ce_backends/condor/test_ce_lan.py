"""The condor CE end to end on a virtual LAN: CondorCoordinator on h1, CondorWorkers on h1 (the
coordinator's own machine, as when a coordinator volunteers or a replica takes over), h2, h3.

Six tasks (four producers with nested outputs, a fan-in over them, one failing task) run as
real HTCondor jobs, the first wave queued before any worker joined (each worker is prepared as
the core does it: StageApp/StageAck, then CondorJoin); the pool holds exactly the three
recruited machines; afterwards no HTCondor process and no CE file remains. The coordinator
side (bindings included) runs inside h1 — its network namespace, host name and /etc/hosts —
as ``_ce_driver.py``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bonjourgrid.ce_backends.condor.coordinator import machine_name
from bonjourgrid.ce_backends.condor.installation import find
from bonjourgrid.testbed import VirtualLan, available

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DRIVER = Path(__file__).with_name("_ce_driver.py")

pytestmark = pytest.mark.vlan


def _require_condor() -> None:
    ok, reason = available()
    if ok and find() is not None:
        return
    why = reason if not ok else "no HTCondor (run scripts/setup-condor)"
    if IN_CI:
        pytest.fail(f"HTCondor CE tests cannot run in CI: {why}", pytrace=False)
    pytest.skip(f"HTCondor CE tests: {why}")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, object], VirtualLan]]:
    _require_condor()
    base = tmp_path_factory.mktemp("condor-ce")
    with VirtualLan(3, base_dir=base / "lan", name="condorce") as lan:
        a, workers = lan.hosts[0], lan.hosts
        req = {
            "base": str(base / "run"),
            "address": a.address,
            "lan": {
                "prefix": lan.prefix,
                "bridge_ns": lan.bridge_ns,
                "hosts_file": str(lan.hosts_file),
            },
            "workers": [{"index": h.index, "address": h.address} for h in workers],
        }
        res = a.run(
            [sys.executable, str(DRIVER)],
            input=json.dumps(req).encode(),
            timeout=55,
            env=a.env({"PYTHONPATH": str(Path(__file__).parents[3])}),
        )
        assert res.returncode == 0, res.stderr.decode()[-3000:]
        report: dict[str, object] = json.loads(res.stdout)
        figures = {
            k: round(float(str(report[k])), 2) for k in ("head_s", "pool_s", "run_s", "stop_s")
        }
        print(f"condor CE figures: {figures}")  # shown with -s
        report["condor_left"] = {
            h.name: [c for p in h.pids() if "condor" in (c := _cmdline(p))] for h in lan.hosts
        }
        yield report, lan


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_every_task_runs_with_its_inputs_and_brings_back_its_outputs(
    run: tuple[dict[str, object], VirtualLan],
) -> None:
    report, _ = run
    states = report["states"]
    assert states == {f"part{i}": "done" for i in range(1, 5)} | {
        "fanin": "done",
        "fails": "failed",
    }
    files = report["files"]
    assert isinstance(files, dict)
    for i in range(1, 5):
        assert files[f"part{i}/parts/p{i}.txt"] == f"HELLO CONDOR\npiece {i}\n"
        assert files[f"part{i}/stdout"].startswith(f"part {i} on ")
        assert files[f"part{i}/stderr"] == ""
    expected = "".join(f"HELLO CONDOR\npiece {i}\n" for i in range(1, 5))
    assert files["fanin/all.txt"] == expected
    assert files["fails/stderr"] == "oops\n"
    assert sorted(k for k in files if k.startswith("fails/")) == ["fails/stderr", "fails/stdout"]


def test_the_fan_in_starts_only_after_its_predecessors_results(
    run: tuple[dict[str, object], VirtualLan],
) -> None:
    events = run[0]["events"]
    assert isinstance(events, list)
    order = [(e[0], e[1]) for e in events]
    fanin = order.index(("launch", "fanin"))
    assert {t for kind, t in order[:fanin] if kind == "result"} >= {f"part{i}" for i in range(1, 5)}
    results = [e for e in events if e[0] == "result"]
    assert [(e[1], e[3]) for e in results if e[1] == "fails"] == [("fails", 3)]


def test_the_pool_holds_exactly_the_recruited_machines(
    run: tuple[dict[str, object], VirtualLan],
) -> None:
    report, lan = run
    recruited = sorted(machine_name(h.address) for h in lan.hosts)
    assert report["staged"] is True, "a worker joined before the app was staged"
    assert sorted(report["members"].values()) == recruited  # type: ignore[attr-defined]
    assert report["machines"], "no sample of the pool during the run"
    for seen in report["machines"]:  # type: ignore[attr-defined]
        assert seen == recruited
    ran_on = report["ran_on"]
    assert isinstance(ran_on, dict) and len(ran_on) == 6
    assert set(ran_on.values()) <= {"node-h1", "node-h2", "node-h3"}


def test_nothing_remains_after_stop(run: tuple[dict[str, object], VirtualLan]) -> None:
    report, _ = run
    assert report["condor_left"] == {"h1": [], "h2": [], "h3": []}
    assert report["left"] == []
