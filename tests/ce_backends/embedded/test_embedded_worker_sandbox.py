"""The embedded worker runs each task in its own sandbox slot and keeps results until acked."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bonjourgrid.app.bundle import sha256_hex, unpack_files
from bonjourgrid.ce_backends.embedded.sandbox import SandboxConfig
from bonjourgrid.ce_backends.embedded.worker import EmbeddedWorker
from bonjourgrid.control.messages import RunTask, TaskResult

TEST_SANDBOX = SandboxConfig(uid_base=65300)


@pytest.fixture
def root() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="bjgrid-worker-test-", dir="/var/tmp"))
    yield d / "app"
    shutil.rmtree(d, ignore_errors=True)


def run_msg(task: str, command: str) -> RunTask:
    return RunTask(
        app="a1", term=1, task=task, attempt=1, argv=("/bin/sh", "-c", command), env={},
        timeout=30.0, cpus=1, outputs=(), inputs=b"", inputs_sha256="",
    )  # fmt: skip


def stdout_of(result: TaskResult, where: Path) -> str:
    unpack_files(result.outputs, where)
    return (where / "stdout").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="slot accounts need root")
def test_concurrent_tasks_run_as_distinct_accounts_and_results_wait_for_acks(
    root: Path, tmp_path: Path
) -> None:
    async def scenario() -> tuple[list[TaskResult], list[TaskResult], list[TaskResult]]:
        worker = EmbeddedWorker("a1", root, sandbox=TEST_SANDBOX)
        await worker.stage(b"", sha256_hex(b""))
        delivered: list[TaskResult] = []

        async def sink(result: TaskResult) -> None:
            delivered.append(result)

        worker.attach(sink)
        worker.start(run_msg("one", "id -u; sleep 0.5"))
        worker.start(run_msg("two", "id -u; sleep 0.5"))
        while len(delivered) < 2:
            await asyncio.sleep(0.05)
        pending = worker.attach(None)
        worker.acknowledged("one", 1)
        left = worker.attach(None)
        await worker.close()
        return delivered, pending, left

    delivered, pending, left = asyncio.run(scenario())
    uids = {stdout_of(r, tmp_path / r.task).strip() for r in delivered}
    assert uids == {"65300", "65301"}
    assert {r.task for r in pending} == {"one", "two"}
    assert [r.task for r in left] == ["two"]
