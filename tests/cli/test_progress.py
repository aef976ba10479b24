"""Progress people can read: the bar fits 80 columns with one count per state and an ETA,
the waiting reason on its own line, plain lines every few seconds when not on a terminal,
and a cancelled or failed app never drawn as complete."""

from __future__ import annotations

import io

from rich.console import Console

from bonjourgrid.cli.progress import PLAIN_EVERY, ProgressView, bar_line, clock, describe, eta
from bonjourgrid.daemon.local_messages import Progress


def prog(ended: bool = False, outcome: str = "", waiting: str = "", **counts: int) -> Progress:
    c = {"pending": 0, "ready": 0, "running": 0, "done": 0, "failed": 0, **counts}
    return Progress("ab12cd34", "triple-sweep-of-a-long-name", "running", dict(c), 3, ended,
                    outcome, "", waiting=waiting)  # fmt: skip


def test_the_bar_fits_80_columns_with_done_of_total_and_an_eta() -> None:
    line = bar_line(prog(done=20, running=4, pending=9, failed=1), 60.0, 79)
    assert len(line) <= 79
    assert "20/34" in line and "ETA 00:39" in line  # 60 s for 20: 13 left take 39 s


def test_one_count_per_state() -> None:
    assert describe(prog(done=2, running=1, pending=3, ready=1, failed=1)) == (
        "done 2  running 1  waiting 4  failed 1  workers 3"
    )


def test_eta_needs_a_rate() -> None:
    assert eta(0, 10, 30.0) is None and clock(None) == "--:--"
    assert eta(5, 0, 30.0) == 0.0
    assert clock(3725) == "1:02:05"


def test_a_cancelled_or_failed_app_never_looks_complete() -> None:
    cancelled = bar_line(prog(True, "cancelled", done=3, failed=7), 12.0, 79)
    assert "─" in cancelled and "cancelled" in cancelled and "3/10" in cancelled
    finished = bar_line(prog(True, "finished", done=10), 12.0, 79)
    assert "─" not in finished and "finished" in finished


def test_a_tiny_terminal_still_gets_the_numbers() -> None:
    line = bar_line(prog(done=1, pending=1), 1.0, 20)
    assert len(line) <= 20 and "1/2" in line


def test_piped_progress_is_plain_lines_at_most_every_few_seconds() -> None:
    out = io.StringIO()
    view = ProgressView(Console(file=out, width=80), live=False, now=0.0)
    with view:
        for t in range(20):  # a change every second
            view.update(prog(done=t, pending=20 - t), now=float(t))
        view.update(prog(True, "finished", done=20), now=20.5)
    lines = out.getvalue().splitlines()
    assert 3 <= len(lines) <= 20 / PLAIN_EVERY + 2, lines
    assert lines[-1].startswith("ab12cd34 running done 20")


def test_the_waiting_reason_is_said_once_per_change_and_markup_is_not_obeyed() -> None:
    out = io.StringIO()
    view = ProgressView(Console(file=out, width=200, color_system=None), live=False, now=0.0)
    hostile = "1 refused this app (h1: [bold]nope[/bold])"
    for t in range(3):
        view.update(prog(waiting=hostile, pending=1), now=float(t))
    said = [ln for ln in out.getvalue().splitlines() if "waiting:" in ln]
    assert said == [f"bjgrid: app ab12cd34 waiting: {hostile}"]


def test_on_a_terminal_the_reason_has_its_own_line_within_80_columns() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    view = ProgressView(console, live=True, now=0.0)
    with view:
        view.update(prog(waiting="3 volunteers could run it: 3 busy with their owners' work",
                         done=2, running=1, pending=5), now=10.0)  # fmt: skip
    assert view._last is not None
    rendered = view.render(view._last, 10.0)
    assert len(rendered) == 3 and all(len(ln) < 80 for ln in rendered[:2])
    assert rendered[2].startswith("waiting: 3 volunteers could run it")


def test_a_change_held_back_is_printed_once_due_without_new_progress() -> None:
    out = io.StringIO()
    view = ProgressView(Console(file=out, width=80), live=False, now=0.0)
    view.update(prog(done=1, pending=1), now=0.0)
    view.update(prog(done=2), now=1.0)  # not due yet: held back
    assert out.getvalue().count("\n") == 1
    view.tick(now=2.0)
    assert out.getvalue().count("\n") == 1
    view.tick(now=PLAIN_EVERY + 0.1)  # due: the last change is said, once
    view.tick(now=3 * PLAIN_EVERY)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "done 2" in lines[1]


def test_cancelled_and_skipped_tasks_have_counts_of_their_own() -> None:
    p = prog(True, "cancelled", done=3, failed=1, cancelled=5, skipped=2)
    assert describe(p) == (
        "done 3  running 0  waiting 0  failed 1  cancelled 5  skipped 2  workers 3"
    )
    assert "3/11" in bar_line(p, 12.0, 79)
    finished = prog(True, "finished", done=3, skipped=2)  # skipped after a failure
    assert "─" in bar_line(finished, 1.0, 79)  # not drawn complete
