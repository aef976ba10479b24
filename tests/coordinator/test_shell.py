"""The daemon's coordinator shell (coordinator/shell.py) around the real ``AppEngine``, with the
real SQLite journal and result store and the embedded backend; only the worker's link is a
fake (it records what the shell sends). The protocol's rules are the engine's (tests/engine);
these check what only the shell can get wrong: no acknowledgement once the journal cannot be
written, group commit (results that arrive together share one commit; nothing is acknowledged
or launched before its entries are committed), a replaced link's messages are not believed, a
backend's result that is not committed is never left waiting."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
from collections.abc import Coroutine
from pathlib import Path

import pytest

from bonjourgrid.app.spec import AppSpec, TaskSpec
from bonjourgrid.config import Config
from bonjourgrid.control.messages import ResultAck, StageAck, TaskResult
from bonjourgrid.control.nodekey import NodeKey
from bonjourgrid.coordinator.app_coordinator import AppCoordinator
from bonjourgrid.coordinator.matchmaking import Offer
from bonjourgrid.coordinator.peers import Identity
from bonjourgrid.coordinator.shell import CoordinatorShell
from bonjourgrid.engine import app_events as ev
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.faulttolerance.journal import Journal
from bonjourgrid.gridkey import GridKey
from bonjourgrid.states.taskstate import TaskState

APP = "app1"


class FakeChannel:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class FakeLink:
    """What the shell uses of a ``WorkerLink``: it records every message sent or posted."""

    def __init__(self, node: str) -> None:
        self.node, self.host, self.slots = node, f"host-{node}", 1
        self.sent: list[object] = []
        self.channel = FakeChannel()

    def post(self, msg: object) -> None:
        self.sent.append(msg)

    async def send(self, msg: object) -> None:
        self.sent.append(msg)

    async def expect(self, kind: type, timeout: float) -> object:
        assert kind is StageAck
        return StageAck(APP, "", True, "")

    async def flush(self, timeout: float) -> None:
        pass

    async def close(self) -> None:
        self.channel.closed = True


def outputs() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"42\n"
        info = tarfile.TarInfo("out.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def result(task: str = "t1", attempt: int = 1) -> TaskResult:
    out = outputs()
    return TaskResult(APP, task, attempt, 0, 0.5, "", out, hashlib.sha256(out).hexdigest())


def app_object(tmp_path: Path, backend: str = "embedded", tasks: int = 1) -> AppCoordinator:
    spec = AppSpec(
        "demo",
        tuple(TaskSpec(f"t{i + 1}", ("true",), outputs=("out.txt",)) for i in range(tasks)),
        backend=backend,
    )
    journal = Journal(tmp_path / "journal.db")
    journal.add_app(
        app=APP, spec=spec.to_json(), bundle=b"", digest="", user="me", term=1,
        role="recruiting", coordinator="coord", coordinator_host="coord-host",
    )  # fmt: skip
    me = Identity("coord", "coord-host", GridKey.generate(), NodeKey.generate())
    return AppCoordinator(
        app_id=APP,
        spec=spec,
        bundle=b"",
        digest="",
        user="me",
        me=me,
        config=Config.fast(),
        offers=lambda: [],
        store_root=tmp_path / "store",
        journal=journal,
    )


async def settle(shell: CoordinatorShell) -> None:
    """Let the shell's background tasks (staging, launching, preparing) and its group
    commit (on the loop's next turn) finish."""
    for _ in range(200):
        await asyncio.sleep(0)
        pending = [t for t in shell._background if not t.done()]
        if not pending and not shell.commit.scheduled:
            return
        if pending:
            await asyncio.wait(pending, timeout=0.1)


async def running_on_one_worker(
    tmp_path: Path, tasks: int = 1, slots: int = 1
) -> tuple[AppCoordinator, CoordinatorShell, FakeLink]:
    app = app_object(tmp_path, tasks=tasks)
    shell, backend = app.coordinate()
    shell.backend = backend
    link = FakeLink("w1")
    link.slots = slots
    shell.links["w1"] = link  # type: ignore[assignment]
    seen = Offer("w1", link.host, ("10.0.0.1",), 1, "idle", slots, slots, 1024, "linux",
                 "x86_64", ("embedded",))  # fmt: skip
    shell.feed(ev.Reserved(1.0, "w1", link.host, slots, seen))
    await settle(shell)  # the backend stages the app there: Prepared
    shell.feed(ev.Tick(1.5))  # the task is placed on it: Launch (RunTask)
    await settle(shell)
    assert app.table.record("t1").state is TaskState.RUNNING
    return app, shell, link


def test_a_result_is_journaled_then_acknowledged(tmp_path: Path) -> None:
    async def scenario() -> None:
        app, shell, link = await running_on_one_worker(tmp_path)
        shell.feed(ev.FromWorker(2.0, "w1", result()))
        await settle(shell)
        acks = [m for m in link.sent if isinstance(m, ResultAck)]
        assert [(a.task, a.attempt) for a in acks] == [("t1", 1)]
        assert app.table.record("t1").state is TaskState.DONE
        journaled = [je.decode(e) for e in app.journal.entries(APP)]
        assert [type(e).__name__ for e in journaled] == ["Started", "Finished"]
        assert (app.store.tasks / "t1" / "out.txt").read_bytes() == b"42\n"

    asyncio.run(scenario())


def test_no_acknowledgement_once_the_journal_cannot_be_written(tmp_path: Path) -> None:
    async def scenario() -> None:
        app, shell, link = await running_on_one_worker(tmp_path)

        def disk_full(app_id: str, entries: object) -> None:
            raise OSError(28, "No space left on device")

        app.journal.append_many = disk_full  # type: ignore[method-assign]
        shell.feed(ev.FromWorker(2.0, "w1", result()))
        await settle(shell)
        assert isinstance(shell.broken, OSError)
        assert not [m for m in link.sent if isinstance(m, ResultAck)]
        shell.feed(ev.FromWorker(2.5, "w1", result()))  # sent again: still nothing
        await settle(shell)
        assert not [m for m in link.sent if isinstance(m, ResultAck)]

    asyncio.run(scenario())


def test_a_replaced_links_messages_are_not_believed(tmp_path: Path) -> None:
    async def scenario() -> None:
        app, shell, link = await running_on_one_worker(tmp_path)
        newer = FakeLink("w1")
        shell.links["w1"] = newer  # type: ignore[assignment]
        shell._on_message(link, result())  # type: ignore[arg-type]
        shell._on_lost(link, "closed")  # type: ignore[arg-type]
        await settle(shell)
        assert app.table.record("t1").state is TaskState.RUNNING  # neither committed nor requeued
        assert shell.links["w1"] is newer

    asyncio.run(scenario())


def test_a_backend_result_that_is_not_committed_raises_rather_than_waiting(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        _, shell, _ = await running_on_one_worker(tmp_path)
        with pytest.raises(RuntimeError, match="not committed"):
            await asyncio.wait_for(shell.on_backend_result(result("t1", 7), None), 5.0)
        shell.feed(ev.Stop(3.0))
        with pytest.raises(RuntimeError):
            await asyncio.wait_for(shell.on_backend_result(result("t1", 1), None), 5.0)

    asyncio.run(scenario())


def test_a_hostile_backend_result_for_another_app_is_dropped(tmp_path: Path) -> None:
    async def scenario() -> None:
        app, shell, _ = await running_on_one_worker(tmp_path)
        other = TaskResult("other-app", "t1", 1, 0, 0.1, "", b"", hashlib.sha256(b"").hexdigest())
        await asyncio.wait_for(shell.on_backend_result(other, None), 5.0)
        assert app.table.record("t1").state is TaskState.RUNNING

    asyncio.run(scenario())


def test_results_that_arrive_together_share_one_commit_and_none_is_acked_before_it(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        app, shell, link = await running_on_one_worker(tmp_path, tasks=2, slots=2)
        assert app.table.record("t2").state is TaskState.RUNNING
        commits: list[list[int]] = []
        append_many = app.journal.append_many

        def counted(app_id: str, entries: list[tuple[int, str]]) -> None:
            commits.append([seq for seq, _ in entries])
            assert not [m for m in link.sent if isinstance(m, ResultAck)]  # none acked yet
            append_many(app_id, entries)

        app.journal.append_many = counted  # type: ignore[method-assign]

        async def stage_only(r: TaskResult) -> None:  # staged; OutputsStaged fed below
            app.store.stage(r.task, r.attempt, r.outputs)

        shell._stage = stage_only  # type: ignore[method-assign]
        shell.feed(ev.FromWorker(2.0, "w1", result("t1")))
        shell.feed(ev.FromWorker(2.0, "w1", result("t2")))
        await settle(shell)
        # both staged: their OutputsStaged arrive in the same turn of the loop
        shell.feed(ev.OutputsStaged(2.0, "t1", 1, ""))
        shell.feed(ev.OutputsStaged(2.0, "t2", 1, ""))
        assert commits == []  # gathered, not yet written
        await settle(shell)
        assert commits == [[3, 4]]
        acks = [(m.task, m.attempt) for m in link.sent if isinstance(m, ResultAck)]
        assert acks == [("t1", 1), ("t2", 1)]
        kinds = [type(je.decode(e)).__name__ for e in app.journal.entries(APP)]
        assert kinds == ["Started", "Started", "Finished", "Finished"]

    asyncio.run(scenario())


def test_a_task_is_launched_only_once_its_start_is_committed(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = app_object(tmp_path)
        shell, backend = app.coordinate()
        shell.backend = backend
        journaled_at_launch: list[tuple[str, int]] = []
        launch = shell._launch

        def carried_out(a: ev.Launch) -> Coroutine[object, object, None]:
            # the moment the shell carries out the Launch action, not when its task runs
            journaled_at_launch.append((a.task, len(app.journal.entries(APP))))
            return launch(a)

        shell._launch = carried_out  # type: ignore[method-assign]
        link = FakeLink("w1")
        shell.links["w1"] = link  # type: ignore[assignment]
        seen = Offer("w1", link.host, ("10.0.0.1",), 1, "idle", 1, 1, 1024, "linux", "x86_64",
                     ("embedded",))  # fmt: skip
        shell.feed(ev.Reserved(1.0, "w1", link.host, 1, seen))
        await settle(shell)
        shell.feed(ev.Tick(1.5))
        assert journaled_at_launch == []  # held behind its Started entry
        await settle(shell)
        assert journaled_at_launch == [("t1", 1)]  # carried out once Started was on disk
        assert [m for m in link.sent if type(m).__name__ == "RunTask"]

    asyncio.run(scenario())
