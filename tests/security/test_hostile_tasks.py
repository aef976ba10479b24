"""Hostile tasks against the embedded sandbox on a root volunteer: real processes, real accounts.

Each attack runs a real task through ``run_task`` / ``EmbeddedWorker`` (and one through real
``bjgrid`` daemons with ``--local``) and asserts the safe outcome: the canaries outside the
sandbox (a root-only "grid key" and a root-owned log) keep content, mtime and inode, their
content is in no result, and the task's escaped processes are dead.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psutil
import pytest

from bonjourgrid.app.bundle import BundleError, sha256_hex, unpack_files
from bonjourgrid.ce_backends.embedded import cgroups
from bonjourgrid.ce_backends.embedded.sandbox import (
    SandboxConfig,
    TaskControl,
    TaskOutcome,
    TaskRun,
    run_task,
)
from bonjourgrid.ce_backends.embedded.worker import EmbeddedWorker
from bonjourgrid.control.messages import RunTask, TaskResult
from bonjourgrid.coordinator.result_store import ResultStore

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="root volunteer: slot accounts")

UID_BASE = 65500
CONFIG = SandboxConfig(uid_base=UID_BASE)
NO_CGROUPS = SandboxConfig(uid_base=UID_BASE, cgroups=False)
SECRET = "grid-key-canary-5f1d2c"
ROOT_LOG = "root-owned log line\n"


@dataclass
class Canaries:
    key: Path
    log: Path
    facts: dict[Path, tuple[bytes, int, int]]

    def assert_untouched(self) -> None:
        for path, (content, mtime, inode) in self.facts.items():
            st = os.stat(path)
            assert path.read_bytes() == content, f"{path} changed"
            assert (st.st_mtime_ns, st.st_ino) == (mtime, inode), f"{path} touched"

    def assert_absent_from(self, blob: bytes, where: Path) -> None:
        names = unpack_files(blob, where)
        for name in names:
            data = (where / name).read_bytes()
            assert SECRET.encode() not in data, f"grid key leaked in {name}"
            assert ROOT_LOG.encode() not in data, f"root log leaked in {name}"


@pytest.fixture
def canaries() -> Iterator[Canaries]:
    d = Path(tempfile.mkdtemp(prefix="bjgrid-canary-", dir="/var/tmp"))
    d.chmod(0o755)
    key, log = d / "grid.key", d / "daemon.log"
    key.write_text(SECRET)
    key.chmod(0o600)
    log.write_text(ROOT_LOG)
    log.chmod(0o644)
    facts = {p: (p.read_bytes(), os.stat(p).st_mtime_ns, os.stat(p).st_ino) for p in (key, log)}
    yield Canaries(key, log, facts)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def scratch() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="bjgrid-hostile-", dir="/var/tmp"))
    base.chmod(0o711)
    (base / "tasks").mkdir(mode=0o711)
    (base / "files").mkdir(mode=0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def task(argv: list[str], **kw: object) -> TaskRun:
    fields: dict[str, object] = {
        "app": "hostile", "task": "t", "attempt": 1, "argv": tuple(argv), "env": {},
        "timeout": 60.0, "outputs": (), "inputs": b"", "inputs_sha256": "",
    }  # fmt: skip
    fields.update(kw)
    return TaskRun(**fields)  # type: ignore[arg-type]


async def run(run: TaskRun, scratch: Path, **kw: object) -> TaskOutcome:
    kw.setdefault("config", CONFIG)
    return await run_task(
        run,
        app_files=scratch / "files",
        scratch=scratch / "tasks",
        **kw,  # type: ignore[arg-type]
    )


def stdout_of(outcome: TaskOutcome, where: Path) -> str:
    unpack_files(outcome.outputs, where)
    return (where / "stdout").read_text()


def gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


# An escaped (double-forked, setsid) child that keeps swapping the logs and the declared
# output for links to the canaries (or for FIFOs) while the task "finishes" successfully.
_SWAPPER = textwrap.dedent(
    """
    import os, sys, time
    KEY, LOG, HOW = sys.argv[1], sys.argv[2], sys.argv[3]
    with open("out.txt", "w") as f:
        f.write("legit result")
    if os.fork() == 0:
        os.setsid()
        if os.fork():
            os._exit(0)
        print(os.getpid(), flush=True)
        open("swapping", "w").close()
        while True:
            for name, target in (("stdout", KEY), ("stderr", LOG), ("out.txt", KEY)):
                try:
                    os.unlink(name)
                except OSError:
                    pass
                try:
                    if HOW == "fifo" and name == "out.txt":
                        os.mkfifo(name)
                    else:
                        os.symlink(target, name)
                except OSError:
                    pass
    while not os.path.exists("swapping"):
        time.sleep(0.01)
    time.sleep(0.3)
    """
)


SWAPPED = ("output refused: out.txt: ", "declared output 'out.txt' was not produced")


def swapper(canaries: Canaries, how: str) -> TaskRun:
    argv = ["python3", "-c", _SWAPPER, str(canaries.key), str(canaries.log), how]
    return task(argv, outputs=("out.txt",))


@pytest.mark.parametrize("config", [CONFIG, NO_CGROUPS], ids=["cgroup", "slot-sweep"])
def test_escaped_child_swapping_outputs_and_logs_for_links_gets_no_canary(
    canaries: Canaries, scratch: Path, tmp_path: Path, config: SandboxConfig
) -> None:
    for attempt in range(1, 4):  # the race is the point: run it a few times
        outcome = asyncio.run(run(swapper(canaries, "link"), scratch, config=config))
        assert outcome.exit_code == 0
        where = tmp_path / str(attempt)
        canaries.assert_absent_from(outcome.outputs, where)
        if outcome.error:  # killed mid-swap: a link, or the name just unlinked
            assert outcome.error.startswith(SWAPPED)
        else:
            assert (where / "out.txt").read_text() == "legit result"
        assert gone(int((where / "stdout").read_text().split()[0]))
        canaries.assert_untouched()


def test_a_fifo_swapped_in_for_an_output_never_blocks_the_event_loop(
    canaries: Canaries, scratch: Path, tmp_path: Path
) -> None:
    async def scenario() -> tuple[TaskOutcome, float]:
        gaps: list[float] = []

        async def heartbeat() -> None:  # stands for the daemon's heartbeats
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.05)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        beat = asyncio.create_task(heartbeat())
        try:
            outcomes = [
                await asyncio.wait_for(run(swapper(canaries, "fifo"), scratch), 60)
                for _ in range(3)
            ]
        finally:
            beat.cancel()
        refused = [o for o in outcomes if o.error]
        return (refused or outcomes)[0], max(gaps)

    outcome, worst_gap = asyncio.run(scenario())
    assert worst_gap < 5.0  # generous: the loop never waited on the FIFO
    assert outcome.error == "" or outcome.error.startswith(SWAPPED)
    canaries.assert_absent_from(outcome.outputs, tmp_path)
    canaries.assert_untouched()


def test_a_fifo_output_fails_the_task_with_the_reason(scratch: Path, tmp_path: Path) -> None:
    outcome = asyncio.run(run(task(["mkfifo", "out.txt"], outputs=("out.txt",)), scratch))
    assert outcome.error == "output refused: out.txt: a FIFO, not a regular file"
    unpack_files(outcome.outputs, tmp_path)
    assert "[bjgrid] output refused" in (tmp_path / "stderr").read_text()


def test_a_hard_link_to_a_readable_file_is_not_collected(scratch: Path) -> None:
    outcome = asyncio.run(
        run(task(["sh", "-c", "echo x > a && ln a out.txt"], outputs=("out.txt",)), scratch)
    )
    assert outcome.error == "output refused: out.txt: a hard link (a file with several names)"


def test_a_link_in_an_output_folder_is_refused(
    canaries: Canaries, scratch: Path, tmp_path: Path
) -> None:
    cmd = f"mkdir -p d/e && echo ok > d/e/f && ln -s {canaries.key} d/e/k"
    outcome = asyncio.run(run(task(["sh", "-c", cmd], outputs=("d",)), scratch))
    assert (
        outcome.error == "output refused: d/e/k: symbolic link resolves outside the task's sandbox"
    )
    canaries.assert_absent_from(outcome.outputs, tmp_path)


# --- caps --------------------------------------------------------------------------------


@pytest.mark.parametrize("big", ["output", "stdout"])
def test_outputs_over_the_cap_fail_cleanly_with_a_small_result(
    scratch: Path, tmp_path: Path, big: str
) -> None:
    config = SandboxConfig(uid_base=UID_BASE, max_output_mb=4)
    cmd = "head -c 6000000 /dev/urandom" + (" > big" if big == "output" else "; : > big")
    outcome = asyncio.run(run(task(["sh", "-c", cmd], outputs=("big",)), scratch, config=config))
    assert outcome.error == "outputs exceed 4 MB or 10000 files (the volunteer's cap)"
    assert len(outcome.outputs) < 256 * 1024  # only the logs (their tails at most)
    names = unpack_files(outcome.outputs, tmp_path)
    assert names == ["stderr", "stdout"]
    assert "[bjgrid] outputs exceed 4 MB" in (tmp_path / "stderr").read_text()


def _bomb(size: int, *, members: int = 1) -> bytes:
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=1) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for i in range(members):
            info = tarfile.TarInfo(f"zeros{i}")
            info.size = size
            tar.addfile(info, io.BytesIO(bytes(size)) if size <= 1 << 20 else _Zeros(size))
    return buf.getvalue()


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.n = n

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        k = min(len(b), self.n)
        b[:k] = bytes(k)
        self.n -= k
        return k


def test_a_decompression_bomb_as_inputs_fails_staging(scratch: Path) -> None:
    config = SandboxConfig(uid_base=UID_BASE, max_unpack_mb=16)
    bomb = _bomb(200 * 1024 * 1024)
    assert len(bomb) < 2 * 1024 * 1024
    run_ = task(["sh", "-c", "touch ran"], inputs=bomb, inputs_sha256=sha256_hex(bomb))
    outcome = asyncio.run(run(run_, scratch, config=config))
    assert outcome.exit_code is None
    assert outcome.error == "staging failed: zeros0: expands beyond 16 MB (the unpacking limit)"
    assert list((scratch / "tasks").iterdir()) == []  # nothing left on the disk


def test_too_many_entries_as_inputs_fail_staging(scratch: Path) -> None:
    config = SandboxConfig(uid_base=UID_BASE, max_unpack_files=50)
    bomb = _bomb(1, members=200)
    run_ = task(["true"], inputs=bomb, inputs_sha256=sha256_hex(bomb))
    outcome = asyncio.run(run(run_, scratch, config=config))
    assert outcome.error == "staging failed: <bundle>: has more than 50 entries"


def test_a_decompression_bomb_as_a_bundle_is_refused_and_nothing_stays(tmp_path: Path) -> None:
    worker = EmbeddedWorker(
        "a1", tmp_path / "app", SandboxConfig(uid_base=UID_BASE, max_unpack_mb=8)
    )
    bomb = _bomb(100 * 1024 * 1024)
    with pytest.raises(BundleError, match="expands beyond 8 MB"):
        asyncio.run(worker.stage(bomb, sha256_hex(bomb)))
    assert worker.staged_sha is None
    assert not (tmp_path / "app" / "files").exists()


def test_a_result_bomb_from_a_rogue_worker_is_refused_by_the_coordinator(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "store", durable=False)
    bomb = _bomb(1100 * 1024 * 1024)  # beyond the default 1024 MB
    with pytest.raises(BundleError, match="expands beyond 1024 MB"):
        store.stage("t", 1, bomb)
    store.discard("t", 1)
    assert list((tmp_path / "store" / "tasks").iterdir()) == []


# --- every process of the task: memory and suspension -------------------------------------

_DOUBLE_FORK = textwrap.dedent(
    """
    import os, sys, time
    if os.fork() == 0:
        os.setsid()
        if os.fork():
            os._exit(0)
        print(os.getpid(), flush=True)
        exec(sys.argv[1])
        os._exit(0)
    time.sleep(float(sys.argv[2]))
    """
)

_HOG = (
    "hog = []\n"
    "while True:\n"
    "    hog.append(bytearray(8 * 1024 * 1024))\n"
    "    hog[-1][::4096] = b'x' * len(hog[-1][::4096])\n"
    "    time.sleep(0.02)\n"
)


@pytest.mark.parametrize("config", [CONFIG, NO_CGROUPS], ids=["cgroup", "slot-sweep"])
def test_a_double_forked_memory_hog_is_killed_by_the_cap(
    scratch: Path, tmp_path: Path, config: SandboxConfig
) -> None:
    argv = ["python3", "-c", _DOUBLE_FORK, _HOG, "60"]
    outcome = asyncio.run(run(task(argv, memory_mb=64), scratch, config=config))
    assert outcome.error == "memory limit exceeded (64 MB)"
    assert outcome.seconds < 50  # not the leader's 60 s sleep: the hog was caught
    assert gone(int(stdout_of(outcome, tmp_path).split()[0]))


_COUNTER = (
    "n = 0\n"
    "while True:\n"
    "    n += 1\n"
    "    if n % 100000 == 0:\n"
    "        open('count', 'w').write(str(n))\n"
)


@pytest.mark.parametrize("config", [CONFIG, NO_CGROUPS], ids=["cgroup", "slot-sweep"])
def test_suspension_stops_double_forked_processes_too(
    scratch: Path, tmp_path: Path, config: SandboxConfig
) -> None:
    control = TaskControl()
    count = scratch / "tasks" / "t.1" / "count"

    async def scenario() -> tuple[TaskOutcome, str, int, int]:
        argv = ["python3", "-c", _DOUBLE_FORK, _COUNTER, "3"]
        running = asyncio.ensure_future(run(task(argv), scratch, control=control, config=config))
        while not count.exists():
            await asyncio.sleep(0.02)
        control.suspend()
        await asyncio.sleep(0.3)
        escaped = max(p for p in psutil.pids() if _uid_of(p) in range(UID_BASE, UID_BASE + 10))
        status = psutil.Process(escaped).status()
        cpu_before = sum(psutil.Process(escaped).cpu_times()[:2])
        await asyncio.sleep(1.0)
        cpu_after = sum(psutil.Process(escaped).cpu_times()[:2])
        before, after = int(cpu_before * 100), int(cpu_after * 100)
        control.resume()
        return await running, status, before, after

    outcome, status, before, after = asyncio.run(scenario())
    assert status == psutil.STATUS_STOPPED
    assert after - before <= 2  # no CPU used while suspended (1/100 s ticks)
    assert outcome.error == "" and outcome.exit_code == 0
    assert gone(int(stdout_of(outcome, tmp_path).split()[0]))


def _uid_of(pid: int) -> int:
    try:
        return int(psutil.Process(pid).uids().real)
    except psutil.Error:
        return -1


# --- slots ---------------------------------------------------------------------------------


def _run_msg(task_id: str, command: str, cpus: int = 1) -> RunTask:
    return RunTask(
        app="a1", term=1, task=task_id, attempt=1, argv=("/bin/sh", "-c", command), env={},
        timeout=30.0, cpus=cpus, outputs=(), inputs=b"", inputs_sha256="",
    )  # fmt: skip


def test_more_run_tasks_than_slots_are_refused_never_run(scratch: Path, tmp_path: Path) -> None:
    marker = scratch / "ran"  # where slot accounts can write (tasks get a private /tmp)
    marker.mkdir()
    marker.chmod(0o777)
    refuse_what_does_not_fit_two_slots(tmp_path, lambda task: f"touch {marker}/{task}")
    assert sorted(p.name for p in marker.iterdir()) == ["one", "two"]


def refuse_what_does_not_fit_two_slots(
    tmp_path: Path, mark: Callable[[str], str], *, network: bool = False
) -> None:
    """Four RunTasks for a worker of two slots; the two that do not fit are refused at once.
    ``mark(task)``: the shell command by which a task that runs leaves a trace (the caller
    checks that only ``one`` and ``two`` left one)."""

    async def scenario() -> list[TaskResult]:
        worker = EmbeddedWorker("a1", tmp_path / "app", SandboxConfig(uid_base=UID_BASE), slots=2)
        await worker.stage(b"", sha256_hex(b""))
        delivered: list[TaskResult] = []

        async def sink(result: TaskResult) -> None:
            delivered.append(result)

        def msg(task: str, then: str = "", cpus: int = 1) -> RunTask:
            return replace(_run_msg(task, f"{mark(task)}{then}", cpus), network=network)

        worker.attach(sink)
        worker.start(msg("one", "; sleep 1"))
        worker.start(msg("big", cpus=2))  # 1 + 2 > 2
        worker.start(msg("two", "; sleep 1"))
        worker.start(msg("three"))
        while len(delivered) < 4:
            await asyncio.sleep(0.05)
        await worker.close()
        return delivered

    by_task = {r.task: r for r in asyncio.run(scenario())}
    for refused in ("big", "three"):
        assert by_task[refused].exit_code is None
        assert by_task[refused].error.startswith("no free slot here (")
        assert by_task[refused].outputs == b""
        # A consistent empty archive: the coordinator reads the refusal, not a corruption.
        assert by_task[refused].outputs_sha256 == sha256_hex(b"")
    assert by_task["one"].exit_code == 0 and by_task["two"].exit_code == 0


# --- cgroups -------------------------------------------------------------------------------


def test_task_cgroups_are_removed_and_a_crashed_daemons_are_swept(scratch: Path) -> None:
    lay = cgroups.layout()
    if lay is None:
        pytest.skip("no usable cgroup hierarchy here")
    outcome = asyncio.run(run(task(["true"]), scratch))
    assert outcome.error == ""
    for h in lay.hierarchies:
        assert not any(n.startswith(f"slot-{UID_BASE}") for n in os.listdir(h.parent))
    # A dead daemon's leftover (with a process in it) is killed and removed at start.
    dead = subprocess.run(["true"], check=True)
    assert dead.returncode == 0
    stale = cgroups.TaskCgroup("pid999999999-1", lay)
    for d in stale.folders():
        os.mkdir(d)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        for f in stale.procs_files():
            Path(f).write_text(str(sleeper.pid))
        cgroups._remove_stale(lay)
        assert sleeper.wait(timeout=10) == -9
        assert not any(os.path.exists(d) for d in stale.folders())
    finally:
        sleeper.kill()
        stale.destroy()


# --- through real volunteer daemons (bjgrid submit --local) -------------------------------


def test_a_hostile_app_on_local_volunteers_leaks_no_canary(
    canaries: Canaries, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "swap.py").write_text(_SWAPPER)
    spec = {
        "version": 1,
        "name": "hostile",
        "files": ["swap.py"],
        "tasks": [
            {"id": "swap", "command": ["python3", "swap.py", str(canaries.key),
                                       str(canaries.log), "link"], "outputs": ["out.txt"]},
            {"id": "fifo", "command": ["python3", "swap.py", str(canaries.key),
                                       str(canaries.log), "fifo"], "outputs": ["out.txt"]},
            {"id": "legit", "command": "echo fine > ok.txt", "outputs": ["ok.txt"]},
        ],
    }  # fmt: skip
    (app / "app.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BJGRID_")}
    done = subprocess.run(
        [sys.executable, "-m", "bonjourgrid.cli", "submit", str(app / "app.json"),
         "--local", "2", "--output", str(tmp_path / "out")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    states = {t["id"]: t["state"] for t in results["tasks"]}
    assert states["legit"] == "done"
    assert (tmp_path / "out" / "legit" / "ok.txt").read_text() == "fine\n"
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and ROOT_LOG.encode() not in data, path
    assert SECRET not in done.stdout + done.stderr
    canaries.assert_untouched()
