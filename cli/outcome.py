"""The one exit-status table that `submit`, `results` and `watch` share, and the JSON object
they print with ``--json``. Pure.

The same outcome gives the same status whichever command reports it (a grid-failed app used
to exit 3 from `submit` and 1 from `results`). docs/cli.md and the README show ``TABLE``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import click

from .context import (
    EXIT_BAD_INPUT,
    EXIT_GRID_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_TASKS_FAILED,
    Abort,
)

TABLE = f"""\
{EXIT_OK:>3}  the app finished and every task is done
{EXIT_TASKS_FAILED:>3}  the app finished and some tasks failed (or were skipped after one)
{EXIT_BAD_INPUT:>3}  bad input: app.json, an option, the environment, a missing local piece
{EXIT_GRID_FAILED:>3}  the app did not finish: the grid failed it (no volunteer within
     --wait-timeout, coordinator lost with no replica) or it was cancelled; for
     `results`, also: still running (what is done so far is written)
{EXIT_NOT_FOUND:>3}  no machine holds the app (or none gives it to you)
{EXIT_INTERRUPTED:>3}  interrupted (submit: the first Ctrl-C cancels the app; watch: it only
     stops watching, the app goes on)"""


def task_rows(results: Mapping[str, object]) -> list[dict[str, object]]:
    """The task entries of a results.json document."""
    tasks = results.get("tasks")
    return [t for t in tasks if isinstance(t, dict)] if isinstance(tasks, list) else []


def exit_status(*, complete: bool, outcome: str, results: Mapping[str, object]) -> int:
    """The status for an app as its holder reports it (``Results``: complete, outcome)."""
    if not complete or outcome != "finished":
        return EXIT_GRID_FAILED
    if any(t.get("state") != "done" for t in task_rows(results)):
        return EXIT_TASKS_FAILED
    return EXIT_OK


def document(
    *,
    app: str,
    name: str,
    outcome: str,
    reason: str,
    output: Path | None,
    status: int,
    results: Mapping[str, object] | None,
    **extra: object,
) -> dict[str, object]:
    """The one JSON object of ``--json`` (submit, results, watch): the same keys for all."""
    doc: dict[str, object] = {
        "app": app,
        "name": name,
        "outcome": outcome or "running",
        "reason": reason,
        "output": str(output) if output is not None else None,
        "exit_status": status,
        **extra,
    }
    if results is not None:
        doc["results"] = dict(results)
    return doc


def print_json(doc: Mapping[str, object]) -> None:
    click.echo(json.dumps(doc, indent=2))


@contextmanager
def json_errors(as_json: bool, app: str | Callable[[], str] | None = None) -> Iterator[None]:
    """With ``--json``, a refusal is still one JSON object on stdout (``error``,
    ``exit_status``; ``app`` the id when one was chosen); the message goes to stderr."""
    try:
        yield
    except Abort as e:
        if as_json:
            app_id = app() if callable(app) else app
            doc = {"app": app_id or None, "error": e.format_message(), "exit_status": e.code}
            print_json(doc)
        raise
