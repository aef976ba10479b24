"""One exit-status table for `submit`, `results` and `watch` (cli/outcome.py), their one
JSON object under --json, and the summary naming each task not done."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bonjourgrid.cli import outcome
from bonjourgrid.cli.app_follow import last_line, summary
from bonjourgrid.cli.context import Abort
from bonjourgrid.daemon.local_messages import Results


def doc(*states: str) -> dict[str, object]:
    return {"app": "a1", "name": "n", "tasks": [{"id": f"t{i}", "state": s}
                                                 for i, s in enumerate(states)]}  # fmt: skip


@pytest.mark.parametrize(
    ("complete", "ended", "states", "code"),
    [
        (True, "finished", ("done", "done"), 0),
        (True, "finished", ("done", "failed"), 1),
        (True, "finished", ("done", "skipped"), 1),
        (True, "failed", ("done", "cancelled"), 3),
        (True, "cancelled", ("cancelled",), 3),
        (False, "", ("done", "running"), 3),
    ],
)
def test_the_same_outcome_gives_the_same_status(
    complete: bool, ended: str, states: tuple[str, ...], code: int
) -> None:
    assert outcome.exit_status(complete=complete, outcome=ended, results=doc(*states)) == code


def test_a_grid_failed_app_is_3_not_1_even_with_every_task_done() -> None:
    """The old `results` said 1 for a grid-failed app, `submit` said 3."""
    assert outcome.exit_status(complete=True, outcome="failed", results=doc("done")) == 3


def test_hostile_results_documents_do_not_crash_the_table() -> None:
    for bad in ({}, {"tasks": "x"}, {"tasks": [1, None, "t"]}, {"tasks": [{"state": 5}]}):
        assert outcome.exit_status(complete=True, outcome="finished", results=bad) in (0, 1)


def test_the_table_documents_every_status_the_cli_uses() -> None:
    for code in (0, 1, 2, 3, 4, 130):
        assert any(line.split()[0] == str(code) for line in outcome.TABLE.splitlines()
                   if line.strip() and line.split()[0].isdigit())  # fmt: skip
    readme = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    assert outcome.TABLE in readme  # docs/cli.md shows the table the CLI prints
    assert outcome.TABLE in (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_json_errors_print_one_object_and_keep_the_status(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(Abort), outcome.json_errors(True, lambda: "ab12cd34"):
        raise Abort("no machine holds app ab12cd34", 4)
    got = json.loads(capsys.readouterr().out)
    assert got == {"app": "ab12cd34", "error": "no machine holds app ab12cd34", "exit_status": 4}


def test_json_errors_print_nothing_without_json(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(Abort), outcome.json_errors(False, "x"):
        raise Abort("nope", 2)
    assert capsys.readouterr().out == ""


def reply(tasks: list[dict[str, object]]) -> Results:
    return Results("a1", "n", True, "finished", {"app": "a1", "name": "n", "tasks": tasks}, b"")


def test_the_summary_lists_each_task_not_done_with_exit_code_and_last_stderr_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "stderr").write_text("starting\nValueError: no input\n\n")
    text = summary(
        reply([
            {"id": "ok", "state": "done", "exit_code": 0},
            {"id": "bad", "state": "failed", "exit_code": 3},
            {"id": "sum", "state": "skipped", "exit_code": None,
             "reason": "predecessor bad failed"},
        ]),
        "",
        tmp_path,
    )  # fmt: skip
    assert text.splitlines()[0] == "finished: 1/3 tasks done, 2 not done"
    assert "  bad: failed, exit 3: ValueError: no input" in text.splitlines()
    assert "  sum: skipped, predecessor bad failed" in text.splitlines()


def test_tasks_a_cancel_stopped_are_one_line_within_80_columns(tmp_path: Path) -> None:
    why = "cancelled by the user"
    tasks = [{"id": f"sq{i:02d}", "state": "cancelled", "exit_code": None, "reason": why}
             for i in range(14, 40)]  # fmt: skip
    tasks.append({"id": "late", "state": "cancelled", "exit_code": 143, "reason": why})
    text = summary(reply([{"id": "ok", "state": "done", "exit_code": 0}, *tasks]), why, tmp_path)
    lines = text.splitlines()
    assert lines[0] == f"finished: 1/28 tasks done, 27 not done — {why}"
    assert lines[1].startswith("  26 cancelled: sq14 sq15") and lines[1].endswith(" …")
    assert "  late: cancelled, exit 143" in lines  # it ran: said on its own
    assert all(len(line) <= 79 for line in lines)


def test_last_line_of_a_hostile_stderr_is_safe_to_print(tmp_path: Path) -> None:
    """A task's stderr is hostile: escapes are not replayed on the terminal, a link is not
    followed, a huge file is read from its tail only."""
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "stderr").write_bytes(b"x" * 10_000_000 + b"\n\x1b]0;pwned\x07\x1b[2Jend\n")
    line = last_line(tmp_path, "t")
    assert "\x1b" not in line and "\x07" not in line and line.endswith("end")
    secret = tmp_path / "secret"
    secret.write_text("the owner's secret\n")
    (tmp_path / "u").mkdir()
    os.symlink(secret, tmp_path / "u" / "stderr")
    assert last_line(tmp_path, "u") == ""
    assert last_line(tmp_path, "../../etc") == ""  # no such task folder: nothing
