"""`bjgrid apps` shows per app done / running / waiting / failed counts, its age and the
waiting reason on a line of its own; what comes from the network is printed as text."""

from __future__ import annotations

import io

from rich.console import Console

from bonjourgrid.cli.apps import age, cells, render
from bonjourgrid.daemon.local_requests import app_counts


def test_counts_group_pending_and_ready_as_waiting() -> None:
    got = app_counts({"pending": 2, "ready": 3, "running": 1, "done": 4, "failed": 1,
                      "cancelled": 6, "skipped": 2})  # fmt: skip
    assert got == {"done": 4, "running": 1, "waiting": 5, "failed": 1, "cancelled": 6,
                   "skipped": 2}  # fmt: skip


def test_hostile_counts_are_zero_not_a_crash() -> None:
    assert app_counts({"done": "7", "running": None, "failed": True}) == {
        "done": 0,
        "running": 0,
        "waiting": 0,
        "failed": 1,
        "cancelled": 0,
        "skipped": 0,
    }  # fmt: skip  (a bool is an int in Python: True counts as 1, never a crash)


def test_a_row_with_counts_and_age() -> None:
    row = {"app": "ab12", "name": "n", "user": "u", "coordinator": "h1", "state": "running",
           "done": 3, "running": 2, "waiting": 5, "failed": 0, "cancelled": 4, "skipped": 1,
           "age": 125.0}  # fmt: skip
    assert cells(row) == ["ab12", "n", "u", "h1", "running", "3", "2", "5", "0", "5", "2m"]


def test_an_app_seen_by_its_record_only_has_no_counts() -> None:
    row = {"app": "cd34", "name": "n", "user": "u", "coordinator": "h2", "state": "running"}
    assert cells(row)[5:] == ["-", "-", "-", "-", "-", "-"]


def test_ages() -> None:
    assert [age(x) for x in (0, 59, 60, 7200, 200000)] == ["0s", "59s", "1m", "2h", "2d"]
    assert [age(x) for x in (None, -5, "3", True)] == ["-", "-", "-", "-"]


def test_markup_from_the_network_is_printed_literally() -> None:
    """A rogue coordinator's record names its user `[bold red]root[/]`; a volunteer's
    refusal in the reason carries `[blink]`: both shown as they are."""
    rows: list[dict[str, object]] = [
        {"app": "ef56", "name": "n", "user": "[bold red]root[/]", "coordinator": "h",
         "state": "running", "waiting_reason": "1 refused this app ([blink]x[/blink])"},
    ]  # fmt: skip
    out = io.StringIO()
    render(Console(file=out, width=200, color_system=None), rows)
    text = out.getvalue()
    assert "[bold red]root[/]" in text
    assert "ef56 waiting: 1 refused this app ([blink]x[/blink])" in text.splitlines()


def test_the_table_fits_80_columns_with_the_id_and_state_whole() -> None:
    rows = [{"app": "28187f57", "name": "squares-sweep", "user": "root", "coordinator": "vm",
             "state": "finished", "done": 14, "running": 0, "waiting": 0, "failed": 0,
             "cancelled": 26, "skipped": 0, "age": 20.0}]  # fmt: skip
    out = io.StringIO()
    render(Console(file=out, width=80, color_system=None), rows)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "28187f57" in lines[1] and "finished" in lines[1] and "26" in lines[1]
