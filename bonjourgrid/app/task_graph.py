"""The app's task graph: `after` patterns resolved, the tasks put in a topological order.

Its own step because it needs every task (sweeps expanded): a pattern can name tasks
declared later, duplicates and cycles only show with all of them, and predecessors'
outputs can only be compared once each task's predecessors are known. The order is
deterministic (ties broken by declaration order) so a spec reads the same on every machine.
"""

from __future__ import annotations

import heapq
import posixpath
from fnmatch import fnmatchcase

from bonjourgrid.app.fields import Fields, join
from bonjourgrid.app.spec import Requirements, TaskSpec, env_pairs
from bonjourgrid.app.tasks import DraftTask

_GLOB_CHARS = frozenset("*?[")


def resolve(f: Fields, tasks: list[DraftTask], defaults: Requirements) -> list[TaskSpec]:
    """Expand `after` patterns, refuse duplicates, self-loops, cycles and output clashes;
    return the tasks in a topological order, ties broken by declaration order."""
    index: dict[str, int] = {}
    for n, t in enumerate(tasks):
        if t.id in index:
            first = tasks[index[t.id]]
            also = join(first.where, "id") + (f" ({first.note})" if first.note else "")
            note = f"{t.note}; " if t.note else ""
            raise f.fail(join(t.where, "id"), f"duplicate task id {t.id!r} ({note}also {also})")
        index[t.id] = n
    ids = list(index)
    preds: list[set[int]] = []
    for t in tasks:
        note = f" ({t.note})" if t.note else ""
        mine: set[int] = set()
        for j, pat in enumerate(t.after):
            path = f"{join(t.where, 'after')}[{j}]"
            if _GLOB_CHARS.isdisjoint(pat):
                matched = [pat] if pat in index else []
            else:
                matched = [i for i in ids if fnmatchcase(i, pat)]
            if not matched:
                raise f.fail(path, f"{pat!r} matches no task{note}")
            if t.id in matched:
                if matched == [pat]:
                    raise f.fail(path, f"task {t.id!r} cannot run after itself")
                raise f.fail(path, f"{pat!r} matches the task itself ({t.id!r}){note}")
            mine.update(index[m] for m in matched)
        preds.append(mine)
    order = _toposort(f, tasks, preds)
    for n, t in enumerate(tasks):
        _check_output_clash(f, t, [tasks[p] for p in sorted(preds[n])])
    return [
        TaskSpec(
            id=t.id,
            command=t.command,
            outputs=t.outputs,
            after=tuple(sorted(tasks[p].id for p in preds[n])),
            retries=t.retries,
            timeout=t.timeout,
            env=env_pairs(t.env),
            requirements=Requirements(**{**defaults.to_json(), **t.requirements}),
        )
        for n, t in ((n, tasks[n]) for n in order)
    ]


def _toposort(f: Fields, tasks: list[DraftTask], preds: list[set[int]]) -> list[int]:
    waiting = [len(p) for p in preds]
    succs: list[list[int]] = [[] for _ in tasks]
    for n, ps in enumerate(preds):
        for p in ps:
            succs[p].append(n)
    heap = [n for n, w in enumerate(waiting) if w == 0]
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        n = heapq.heappop(heap)
        order.append(n)
        for s in succs[n]:
            waiting[s] -= 1
            if waiting[s] == 0:
                heapq.heappush(heap, s)
    if len(order) < len(tasks):
        done = set(order)
        start = min(n for n in range(len(tasks)) if n not in done)
        path = [start]
        while True:  # walk predecessors inside the cycle until one repeats
            nxt = min(p for p in preds[path[-1]] if p not in done and waiting[p] > 0)
            if nxt in path:
                cycle = [*path[path.index(nxt) :], nxt]
                break
            path.append(nxt)
        first = tasks[cycle[0]]
        text = " after ".join(repr(tasks[c].id) for c in cycle)
        raise f.fail(join(first.where, "after"), f"dependency cycle: {text}")
    return order


def _check_output_clash(f: Fields, t: DraftTask, preds: list[DraftTask]) -> None:
    """Predecessors' outputs all land in `t`'s working folder: they must not collide."""
    owner: dict[str, DraftTask] = {}
    for p in preds:
        for out in p.outputs:
            other = owner.get(out)
            if other is not None and other is not p:
                _clash(f, t, other, p, out, out)
            owner[out] = p
    for path, p in owner.items():
        parent = posixpath.dirname(path)
        while parent:
            other = owner.get(parent)
            if other is not None and other is not p:
                _clash(f, t, other, p, parent, path)
            parent = posixpath.dirname(parent)


def _clash(f: Fields, t: DraftTask, a: DraftTask, b: DraftTask, out_a: str, out_b: str) -> None:
    note = f" ({t.note})" if t.note else ""
    if out_a == out_b:
        what = f"both declare output {out_a!r}"
    else:
        what = f"declare clashing outputs {out_a!r} and {out_b!r}"
    raise f.fail(join(t.where, "after"), f"predecessors {a.id!r} and {b.id!r} {what}{note}")
