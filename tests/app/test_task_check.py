"""A RunTask is checked against the spec: what the coordinator builds passes, any deviation
(argv, env, outputs, timeout, cpus, memory, network, unknown task) and any input that is not a
predecessor's declared output is refused with the reason."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import tarfile

import pytest

from bonjourgrid.app import AppSpec, TaskSpec
from bonjourgrid.app.bundle import pack_entries
from bonjourgrid.app.spec import Requirements
from bonjourgrid.app.task_check import InputsError, input_names, inputs_problem, runtask_matches
from bonjourgrid.ce_backends.embedded.coordinator import EmbeddedCoordinator
from bonjourgrid.control.messages import RunTask
from bonjourgrid.states.tasktable import Attempt

SPEC = AppSpec(
    name="demo",
    tasks=(
        TaskSpec(
            id="a",
            command=("sh", "run.sh"),
            outputs=("out.txt", "deep/dir/b.bin"),
            env=(("MODE", "fast"),),
            timeout=60.0,
            requirements=Requirements(cpus=2, memory_mb=512, network=True),
        ),
        TaskSpec(id="b", command="cat out.txt > sum.txt", after=("a",), outputs=("sum.txt",)),
        TaskSpec(id="c", command=("true",), outputs=("c.txt",)),
    ),
    files=("run.sh",),
)


class _Handle:
    """Records what the embedded backend sends a worker."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    async def send(self, msg: object) -> None:
        self.sent.append(msg)


class _App:
    app_id, term = "app1", 1


def coordinator_runtask(task_id: str, inputs: bytes = b"") -> RunTask:
    """The RunTask the embedded backend really sends for ``task_id``."""
    handle = _Handle()
    backend = EmbeddedCoordinator(_App())  # type: ignore[arg-type]
    task = SPEC.task(task_id)
    attempt = Attempt(task_id, 1, "w1")
    asyncio.run(backend.launch(task, attempt, handle, inputs))  # type: ignore[arg-type]
    (msg,) = handle.sent
    assert isinstance(msg, RunTask)
    return msg


@pytest.mark.parametrize("task_id", ["a", "b", "c"])
def test_the_runtask_the_coordinator_builds_matches_its_spec(task_id: str) -> None:
    assert runtask_matches(SPEC, coordinator_runtask(task_id)) is None


def test_a_spec_that_went_through_json_still_matches() -> None:
    again = AppSpec.from_json(SPEC.to_json())
    assert runtask_matches(again, coordinator_runtask("a")) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("argv", ("/bin/sh", "-c", "cat ~/.config/bjgrid/grid.key")),
        ("argv", ("sh", "run.sh", "--extra")),
        ("env", {"MODE": "fast", "LD_PRELOAD": "/tmp/evil.so"}),
        ("env", {"MODE": "slow"}),
        ("outputs", ("out.txt",)),
        ("outputs", ("out.txt", "deep/dir/b.bin", "stolen.txt")),
        ("timeout", None),
        ("cpus", 8),
        ("memory_mb", 0),
        ("network", False),
    ],
)
def test_a_runtask_that_deviates_from_the_spec_is_refused(field: str, value: object) -> None:
    msg = dataclasses.replace(coordinator_runtask("a"), **{field: value})
    why = runtask_matches(SPEC, msg)
    assert why is not None and field in why


def test_network_for_a_task_without_it_is_refused() -> None:
    msg = dataclasses.replace(coordinator_runtask("c"), network=True)
    assert "network" in (runtask_matches(SPEC, msg) or "")


def test_a_task_that_is_not_in_the_spec_is_refused() -> None:
    msg = dataclasses.replace(coordinator_runtask("c"), task="steal")
    assert "not in the app's spec" in (runtask_matches(SPEC, msg) or "")


def test_predecessor_outputs_are_accepted_as_inputs() -> None:
    assert inputs_problem(SPEC, "b", ["out.txt", "deep", "deep/dir", "deep/dir/b.bin"]) is None
    assert inputs_problem(SPEC, "b", ["./out.txt"]) is None
    assert inputs_problem(SPEC, "b", []) is None


@pytest.mark.parametrize(
    ("task_id", "names"),
    [
        ("b", ["run.sh"]),  # would overwrite the app's own script
        ("b", ["out.txt", "sum.txt"]),  # the task's own output, not a predecessor's
        ("c", ["out.txt"]),  # c has no predecessors
        ("b", ["deep/other"]),
        ("nope", []),
    ],
)
def test_anything_else_as_inputs_is_refused(task_id: str, names: list[str]) -> None:
    assert inputs_problem(SPEC, task_id, names) is not None


def test_input_names_reads_member_names() -> None:
    blob = pack_entries({"out.txt": (0o644, 2, io.BytesIO(b"hi")), "deep": None})
    assert sorted(input_names(blob, max_bytes=100, max_members=10)) == ["deep", "out.txt"]
    assert input_names(b"", max_bytes=1, max_members=1) == []


def test_input_names_is_bounded_and_refuses_garbage() -> None:
    big = pack_entries({"out.txt": (0o644, 10_000, io.BytesIO(b"\0" * 10_000))})
    with pytest.raises(InputsError, match="expand beyond"):
        input_names(big, max_bytes=1000, max_members=10)
    many = pack_entries({f"f{i}": (0o644, 0, io.BytesIO(b"")) for i in range(20)})
    with pytest.raises(InputsError, match="more than"):
        input_names(many, max_bytes=1000, max_members=5)
    with pytest.raises(InputsError, match="not a valid"):
        input_names(b"not a tar", max_bytes=1000, max_members=5)


def test_input_names_sees_a_link_member_by_name() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("run.sh")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/shadow"
        tar.addfile(info)
    names = input_names(buf.getvalue(), max_bytes=1000, max_members=5)
    assert names == ["run.sh"] and inputs_problem(SPEC, "b", names) is not None
