"""Progress of an app on the terminal: a bar with pending/running/done/failed and workers."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from bonjourgrid.daemon.local_messages import Progress as AppProgress


def _n(p: AppProgress, state: str) -> int:
    v = p.counts.get(state, 0)
    return v if isinstance(v, int) else 0


def describe(p: AppProgress) -> str:
    waiting = _n(p, "pending") + _n(p, "ready")
    line = (
        f"{p.role:<10} pending {waiting}  running {_n(p, 'running')}  done {_n(p, 'done')}  "
        f"failed {_n(p, 'failed')}  workers {p.workers}"
    )
    return f"{line}  waiting: {p.waiting}" if p.waiting else line


class ProgressView:
    """A live bar on a terminal; one line per change when ``plain`` (e.g. --json on stderr)."""

    def __init__(self, console: Console, *, enabled: bool, plain: bool = False) -> None:
        self.console = console
        self.enabled = enabled
        self.plain = plain
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last = ""

    def __enter__(self) -> ProgressView:
        if self.enabled:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("app", total=None, detail="starting")
        return self

    def update(self, p: AppProgress) -> None:
        total = sum(v for v in p.counts.values() if isinstance(v, int))
        finished = _n(p, "done") + _n(p, "failed")
        line = describe(p)
        if self._bar is not None and self._task is not None:
            self._bar.update(
                self._task, description=p.name, total=total, completed=finished, detail=line
            )
        elif self.plain and line != self._last:
            self.console.print(f"{p.app} {line}")
        self._last = line

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(t, e, tb)
