"""`bjgrid submit` refuses a malformed app.json with a message naming the file, the field and the
problem, exit status 2 and no traceback. Through the real CLI (`CliRunner`), before any daemon
or network is touched."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bonjourgrid.cli.main import cli

OK_TASK: dict[str, object] = {"id": "a", "command": ["true"]}


def base(**top: object) -> dict[str, object]:
    """A valid app with one task, updated with ``top``."""
    return {"name": "demo", "tasks": [OK_TASK], **top}


def tasks(*ts: dict[str, object], **top: object) -> dict[str, object]:
    return {"name": "demo", "tasks": list(ts), **top}


def escaping_symlink(app_dir: Path) -> None:
    outside = app_dir.parent / "outside.txt"
    outside.write_text("secret\n")
    (app_dir / "link.txt").symlink_to(outside)


# (case id, app.json text or object, setup of the app folder, expected field path, problem text)
CASES: list[tuple[str, object, Callable[[Path], None] | None, str, str]] = [
    ("invalid-json", '{"name": "demo",\n "tasks": [', None, "", "invalid JSON at line 2"),
    ("duplicate-json-key", '{"name": "a", "name": "b", "tasks": []}', None, "",
     "duplicate key 'name'"),
    ("not-an-object", "[1, 2]", None, "", "expected a JSON object at the top level, got array"),
    ("unknown-top-level-key", base(worker=3), None, "worker", "unknown key"),
    ("unknown-task-key", tasks({"id": "a", "command": ["true"], "cmd": "x"}), None,
     "tasks[0].cmd", "unknown key"),
    ("missing-name", {"tasks": [OK_TASK]}, None, "", "missing required key 'name'"),
    ("missing-command", tasks({"id": "a"}), None, "tasks[0]", "missing required key 'command'"),
    ("no-tasks", {"name": "demo"}, None, "tasks", "no tasks"),
    ("duplicate-ids", tasks(OK_TASK, {"id": "a", "command": ["false"]}), None,
     "tasks[1].id", "duplicate task id 'a'"),
    ("cycle", tasks({"id": "a", "command": ["true"], "after": ["b"]},
                    {"id": "b", "command": ["true"], "after": ["a"]}), None,
     "tasks[0].after", "dependency cycle: 'a' after 'b' after 'a'"),
    ("after-matches-nothing", tasks({"id": "a", "command": ["true"], "after": ["zz-*"]}), None,
     "tasks[0].after[0]", "'zz-*' matches no task"),
    ("absolute-output", tasks({"id": "a", "command": ["true"], "outputs": ["/etc/passwd"]}), None,
     "tasks[0].outputs[0]", "absolute path"),
    ("dotdot-output", tasks({"id": "a", "command": ["true"], "outputs": ["x/../../y"]}), None,
     "tasks[0].outputs[0]", "'..'"),
    ("output-named-stdout", tasks({"id": "a", "command": ["true"], "outputs": ["stdout"]}), None,
     "tasks[0].outputs[0]", "reserved for the task's captured output"),
    ("missing-file", base(files=["nope.py"]), None, "files[0]",
     "'nope.py' does not exist in the app folder"),
    ("file-escaping-with-dotdot", base(files=["../outside.txt"]), None, "files[0]", "'..'"),
    ("file-escaping-by-symlink", base(files=["link.txt"]), escaping_symlink, "files[0]",
     "outside the app folder"),
    ("bad-version", base(version=2), None, "version", "unsupported version 2"),
    ("bad-name", base(name="my app!"), None, "name", "'my app!' is not a valid app name"),
    ("bad-sweep-placeholder",
     {"name": "demo", "sweeps": [{"template": {"id": "s-{i}", "command": ["echo", "{j}"]},
                                  "params": {"i": [1, 2]}}]}, None,
     "sweeps[0].template.command[1]", "unknown placeholder '{j}'"),
    ("workers-zero", base(workers=0), None, "workers", "must be at least 1, got 0"),
    ("id-results-json", tasks({"id": "results.json", "command": ["true"]}), None, "tasks[0].id",
     "'results.json' is reserved"),
    ("predecessors-same-output",
     tasks({"id": "a", "command": ["true"], "outputs": ["x.txt"]},
           {"id": "b", "command": ["true"], "outputs": ["x.txt"]},
           {"id": "c", "command": ["true"], "after": ["a", "b"]}), None,
     "tasks[2].after", "predecessors 'a' and 'b' both declare output 'x.txt'"),
    ("negative-retries", tasks({"id": "a", "command": ["true"], "retries": -1}), None,
     "tasks[0].retries", "must be at least 0"),
    ("zero-timeout", tasks({"id": "a", "command": ["true"], "timeout": 0}), None,
     "tasks[0].timeout", "must be a positive number of seconds"),
    ("unknown-backend", base(backend="slurm"), None, "backend", "unknown backend 'slurm'"),
]  # fmt: skip


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env={"BJGRID_HOME": None})


def write_app(tmp_path: Path, doc: object, setup: Callable[[Path], None] | None) -> Path:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    text = doc if isinstance(doc, str) else json.dumps(doc)
    (app_dir / "app.json").write_text(text)
    if setup is not None:
        setup(app_dir)
    return app_dir / "app.json"


@pytest.mark.parametrize(
    ("doc", "setup", "field", "problem"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_malformed_app_json_is_refused_with_a_clear_message(
    tmp_path: Path,
    doc: object,
    setup: Callable[[Path], None] | None,
    field: str,
    problem: str,
) -> None:
    app_json = write_app(tmp_path, doc, setup)
    result = invoke("submit", str(app_json))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = result.stderr.strip()
    assert message.startswith(f"bjgrid: {app_json}: "), message
    if field:
        assert f": {field}: " in message, message
    assert problem in message, message
    assert result.stdout == "", "nothing may reach stdout (its first line belongs to `app <ID>`)"


def test_every_case_has_its_own_message(tmp_path: Path) -> None:
    messages = set()
    for n, (_, doc, setup, _, _) in enumerate(CASES):
        d = tmp_path / str(n)
        d.mkdir()
        messages.add(invoke("submit", str(write_app(d, doc, setup))).stderr.split(": ", 2)[-1])
    assert len(messages) == len(CASES) >= 14


def test_missing_app_json_is_bad_input(tmp_path: Path) -> None:
    result = invoke("submit", str(tmp_path / "nowhere" / "app.json"))
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_bjgrid_schema_prints_the_json_schema_whole() -> None:
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)  # stdout is the schema and nothing else
    assert schema["type"] == "object"
    assert {"name", "tasks", "sweeps", "files"} <= set(schema["properties"])


def test_submit_help_is_short_and_points_at_the_schema() -> None:
    result = invoke("submit", "--help")
    assert result.exit_code == 0
    assert len(result.output.splitlines()) <= 80, result.output
    assert "bjgrid schema" in result.output and '"properties"' not in result.output


def test_local_workers_with_a_middleware_backend_are_refused_clearly(tmp_path: Path) -> None:
    app_json = write_app(tmp_path, base(), None)
    result = invoke("submit", str(app_json), "--backend", "condor", "--local", "2")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "--local runs the embedded backend only" in result.stderr
