"""Policies an ``AppEngine`` is given: when a result counts as committed, and how long
unplaceable work waits. The engine holds no switch: a test (or the simulation's broken-rule
run) passes another policy object, the product passes these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from bonjourgrid.faulttolerance.quorum import Members


class Quorum(Protocol):
    def durable(self, members: Members, acked: Mapping[str, int], seq: int) -> bool:
        """Whether entry ``seq`` is committed, given each member's acknowledged count."""
        ...


class WriteQuorum:
    """The product's rule (faulttolerance/quorum.py): ``W`` of every set in force hold it
    (the coordinator's own copy counts while it is a member; an empty set: at once)."""

    def durable(self, members: Members, acked: Mapping[str, int], seq: int) -> bool:
        return members.durable(acked, seq)


@dataclass(frozen=True)
class WaitPolicy:
    """Waiting for volunteers, as an HTCondor job does. ``wait_timeout`` None: wait as long
    as it takes. Else the app fails once it has had no worker that long, and a task that no
    volunteer seen could ever run is given up once it waited that long while the rest of the
    app runs (app.json ``wait_timeout``, ``submit --wait-timeout``)."""

    wait_timeout: float | None = None

    def give_up_task(self, waited: float, never: str | None, progressing: bool) -> bool:
        """Give up on a task that waited ``waited`` s; ``never``: why no volunteer seen could
        ever run it (None: one could); ``progressing``: the rest of the app runs or ran."""
        limit = self.wait_timeout
        return never is not None and limit is not None and progressing and waited > limit

    def fail_app(self, without_worker: float) -> bool:
        """Fail the app after ``without_worker`` s with no worker at all."""
        return self.wait_timeout is not None and without_worker > self.wait_timeout
