"""Why ready tasks wait for a volunteer, and when to stop waiting (``WaitPolicy``): the
recruitment rules, pure. ``text`` is the app's waiting reason
(progress, ``bjgrid apps``)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from bonjourgrid.app.spec import AppSpec
from bonjourgrid.engine.matchmaking import Offer, fits, unmet, waiting_reason
from bonjourgrid.engine.policy import WaitPolicy
from bonjourgrid.states.taskstate import TERMINAL_STATES, TaskState
from bonjourgrid.states.tasktable import TaskTable

REFUSAL_MEMORY = 30.0
"""Seconds a refusal counts in the waiting reason ("N refused this app")."""


class Waiting:
    def __init__(self, app: str, spec: AppSpec, policy: WaitPolicy) -> None:
        self.app = app
        self.spec = spec
        self.policy = policy
        self.text = ""
        """Why ready tasks wait: the requirement no volunteer meets ("" when none)."""
        self.last_refusal = ""
        self._unfit_since: dict[str, float] = {}

    def explain(
        self,
        now: float,
        table: TaskTable,
        offers: Sequence[Offer],
        backend: str,
        mine: Collection[str],
        refused: Mapping[str, float],
        fair_capped: bool,
        all_at_once: bool,
    ) -> list[tuple[str, str]]:
        """Update ``text``; the tasks to give up on, with the reason (``WaitPolicy``).
        ``all_at_once``: the middleware gets every unfinished task (none wait "ready")."""
        lately = {n for n, t in refused.items() if now - t < REFUSAL_MEMORY}
        if all_at_once and not mine:
            waiting = [r.id for r in table.records() if r.state not in TERMINAL_STATES]
        else:
            waiting = list(table.ready())
        progressing = bool(mine) or table.counts().get(TaskState.DONE, 0) > 0
        unmatched: list[tuple[str, str]] = []
        give_up: list[tuple[str, str]] = []
        for task_id in waiting:
            req = self.spec.task(task_id).requirements
            why = waiting_reason(
                offers,
                req,
                backend,
                app=self.app,
                mine=mine,
                refused=lately,
                fair_capped=fair_capped,
            )
            if why is None:
                self._unfit_since.pop(task_id, None)
                continue
            unmatched.append((task_id, why))
            never = unmet(offers, req, backend)
            since = self._unfit_since.setdefault(task_id, now)
            if never is not None and self.policy.give_up_task(now - since, never, progressing):
                wants = ", ".join(f"{k}={v}" for k, v in req.to_json().items() if v)
                give_up.append(
                    (task_id, f"no volunteer satisfies its requirements ({wants}): {never}")
                )
        self.text = ""
        if unmatched:
            task_id, why = unmatched[0]
            more = f" and {len(unmatched) - 1} more" if len(unmatched) > 1 else ""
            self.text = f"{why}, for task {task_id}{more}"
        return give_up

    def failed(self, table: TaskTable, without_worker: float) -> str | None:
        """The reason to fail the app after ``without_worker`` s with no worker, or None."""
        if not self.policy.fail_app(without_worker) or table.finished():
            return None
        reason = (
            f"no volunteer took the app within its wait timeout ({self.policy.wait_timeout:g} s)"
        )
        if self.text:
            reason += f": {self.text}"
        if self.last_refusal:
            reason += f" (last refusal: {self.last_refusal})"
        return reason

    def ready_fitting(self, table: TaskTable, offers: Sequence[Offer | None], backend: str) -> int:
        """Ready tasks one of the idle workers (their ``offers``) could run: an app waiting
        for a volunteer that fits some task must not keep idle workers none of its tasks fits."""
        known = [o for o in offers if o is not None]
        if len(known) < len(offers):  # a worker whose record we lack: assume it fits
            return len(table.ready())
        return sum(
            1
            for t in table.ready()
            if any(fits(o, self.spec.task(t).requirements, backend) for o in known)
        )
