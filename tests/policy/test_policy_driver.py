"""The policy driver with an injected owner: real tasks of the embedded worker are stopped
within 1 s when the owner comes back, continued when they leave, given back after too long."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bonjourgrid.app.bundle import sha256_hex
from bonjourgrid.ce_backends.embedded.sandbox import SandboxConfig
from bonjourgrid.ce_backends.embedded.worker import EmbeddedWorker
from bonjourgrid.control.messages import RunTask
from bonjourgrid.policy import (
    Action,
    Activity,
    FileActivitySource,
    PolicyConfig,
    PolicyConfigError,
    PolicyDriver,
    PolicyState,
)

TEST_SANDBOX = SandboxConfig(uid_base=65200)


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="bjgrid-policy-test-", dir="/var/tmp"))
    d.chmod(0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def spin_task(marker: str, n: int) -> RunTask:
    # The marker names the processes in ps, so the test finds them whatever their uid.
    return RunTask(
        app="a1", term=1, task=f"spin{n}", attempt=1,
        argv=("/bin/sh", "-c", f"while :; do sleep 0.05; done # {marker}"),
        env={}, timeout=60.0, cpus=1, outputs=(), inputs=b"", inputs_sha256="",
    )  # fmt: skip


def states(marker: str) -> set[str]:
    found = set()
    for p in psutil.process_iter(["cmdline", "status"]):
        if marker in " ".join(p.info["cmdline"] or ()):
            found.add(p.info["status"])
    return found


async def wait_for(check: object, limit: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if check():  # type: ignore[operator]
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {limit} s")


def test_owner_activity_stops_and_continues_real_tasks(workdir: Path) -> None:
    marker = f"bjgrid-policy-{time.monotonic_ns()}"
    activity = workdir / "owner-activity"
    seen: list[PolicyState] = []
    given_back: list[Action] = []

    async def scenario() -> tuple[float, float]:
        worker = EmbeddedWorker("a1", workdir / "app", sandbox=TEST_SANDBOX)
        await worker.stage(b"", sha256_hex(b""))

        async def act(action: Action) -> None:
            if action is Action.SUSPEND:
                worker.suspend()
            elif action is Action.RESUME:
                worker.resume()
            else:
                given_back.append(action)

        async def publish(state: PolicyState) -> None:
            seen.append(state)

        config = PolicyConfig.fast().replace({"resume_after": 0.5, "max_suspension": 2.0})
        driver = PolicyDriver(
            FileActivitySource(activity),
            config,
            on_action=act,
            on_state=publish,
            has_tasks=lambda: bool(worker.running()),
        )
        runner = asyncio.create_task(driver.run())
        try:
            worker.start(spin_task(marker, 1))
            worker.start(spin_task(marker, 2))
            await wait_for(lambda: states(marker) and "stopped" not in states(marker), 5)
            activity.write_text("busy\n")
            stop = await wait_for(lambda: states(marker) == {"stopped"}, 3.0)
            activity.write_text("idle\n")
            cont = await wait_for(lambda: "stopped" not in states(marker), 3.0)
            assert driver.state is PolicyState.OK
            activity.write_text("busy\n")
            await wait_for(lambda: given_back, 5.0)
            return stop, cont
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            await worker.close()

    stop, cont = asyncio.run(scenario())
    assert stop < 1.0  # the owner comes first: tasks stop within 1 s
    assert cont >= 0.4  # continued only after the quiet period (resume_after 0.5 s)
    assert seen == [PolicyState.OK, PolicyState.BUSY, PolicyState.OK, PolicyState.BUSY]
    assert given_back == [Action.GIVE_BACK]
    assert states(marker) == set()  # closing the worker killed everything


def test_a_failing_callback_does_not_stop_the_driver(tmp_path: Path) -> None:
    calls: list[Action] = []

    async def broken(action: Action) -> None:
        calls.append(action)
        raise RuntimeError("boom")

    async def scenario() -> None:
        path = tmp_path / "owner-activity"
        clock = iter([0.0, 1.0, 2.0, 3.0])
        driver = PolicyDriver(
            FileActivitySource(path),
            PolicyConfig(resume_after=1.0),
            on_action=broken,
            clock=lambda: next(clock),
        )
        path.write_text("busy")
        assert await driver.step() == [Action.SUSPEND]
        path.write_text("idle")
        assert await driver.step() == []
        assert await driver.step() == [Action.RESUME]

    asyncio.run(scenario())
    assert calls == [Action.SUSPEND, Action.RESUME]


class CountingSource:
    """An owner who is never there; remembers when it was sampled."""

    def __init__(self) -> None:
        self.at: list[float] = []

    def sample(self, now: float) -> Activity:
        self.at.append(time.monotonic())
        return Activity(busy=False)


def test_an_idle_volunteer_samples_seldom_and_fast_again_once_a_task_runs() -> None:
    source = CountingSource()
    tasks = False
    config = PolicyConfig(poll_interval=0.05, idle_poll_interval=2.0)

    async def scenario() -> float:
        nonlocal tasks
        driver = PolicyDriver(source, config, on_action=_nothing, has_tasks=lambda: tasks)
        runner = asyncio.create_task(driver.run())
        try:
            await wait_for(lambda: source.at, 5.0)
            await asyncio.sleep(1.0)
            assert len(source.at) == 1  # not sampled again within the idle interval
            tasks, started = True, time.monotonic()
            await wait_for(lambda: len(source.at) >= 2, 5.0)
            seen = source.at[1] - started
            await asyncio.sleep(0.5)
            assert len(source.at) >= 4  # every poll_interval while the task runs
            return seen
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    # Without the wake on has_tasks() the next sample would come ~1 s later (idle interval).
    assert asyncio.run(scenario()) < 0.6


async def _nothing(action: Action) -> None:
    pass


def test_an_idle_daemon_sleeps_the_whole_idle_interval_until_woken_by_a_reservation() -> None:
    source = CountingSource()
    engaged = False
    config = PolicyConfig(poll_interval=0.05, idle_poll_interval=3.0)

    async def scenario() -> float:
        nonlocal engaged
        driver = PolicyDriver(
            source, config, on_action=_nothing, has_tasks=lambda: False, engaged=lambda: engaged
        )
        runner = asyncio.create_task(driver.run())
        try:
            await wait_for(lambda: source.at, 5.0)
            engaged = True  # reserved, but nobody says so: no polling notices it
            await asyncio.sleep(1.0)
            assert len(source.at) == 1
            woken = time.monotonic()
            driver.wake()  # the daemon's state changed
            await wait_for(lambda: len(source.at) >= 3, 5.0)  # fast: every poll_interval
            return source.at[1] - woken
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    assert asyncio.run(scenario()) < 1.0  # not the ~2 s left of the idle interval


def test_the_idle_interval_cannot_be_shorter_than_the_busy_one() -> None:
    with pytest.raises(PolicyConfigError):
        PolicyConfig(poll_interval=1.0, idle_poll_interval=0.5)
