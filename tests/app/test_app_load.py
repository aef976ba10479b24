"""app.json validation: good apps load; each malformed app gets one exact, located message."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bonjourgrid.app import AppError, AppSpec, Requirements, TaskSpec, load_app

KEYS = (
    "$schema, version, name, files, tasks, sweeps, workers, replicas, backend, requirements, "
    "weight, wait_timeout"
)
TASK_KEYS = "id, command, outputs, after, retries, timeout, env, requirements"
NAME_RULE = (
    "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters"
)

BASE: dict[str, Any] = {
    "name": "squares",
    "files": ["square.py", "data/"],
    "tasks": [
        {"id": "sum", "command": ["python3", "sum.py"], "after": ["sq-*"], "outputs": ["total.txt"]}
    ],
    "sweeps": [
        {
            "template": {
                "id": "sq-{i}",
                "command": ["python3", "square.py", "{i}"],
                "outputs": ["out-{i}.txt"],
            },
            "params": {"i": [1, 2, 3, 4]},
        }
    ],
    "workers": 4,
    "replicas": 1,
    "backend": "embedded",
    "requirements": {"cpus": 1, "memory_mb": 256},
}


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`squares/` with the BASE files, and the working folder set so sources read
    `squares/app.json`."""
    d = tmp_path / "squares"
    (d / "data").mkdir(parents=True)
    (d / "square.py").write_text("import sys; print(int(sys.argv[1]) ** 2)\n")
    (d / "data" / "x.txt").write_text("x\n")
    monkeypatch.chdir(tmp_path)
    return d


def write(app_dir: Path, data: object) -> str:
    (app_dir / "app.json").write_text(json.dumps(data))
    return "squares/app.json"


def test_the_issue_example_loads(app_dir: Path) -> None:
    spec, where = load_app(write(app_dir, BASE))
    assert where == app_dir.resolve()
    assert spec.name == "squares"
    assert spec.files == ("square.py", "data")
    assert [t.id for t in spec.tasks] == ["sq-1", "sq-2", "sq-3", "sq-4", "sum"]
    assert spec.task("sum").after == ("sq-1", "sq-2", "sq-3", "sq-4")
    assert spec.task("sq-3") == TaskSpec(
        id="sq-3",
        command=("python3", "square.py", "3"),
        outputs=("out-3.txt",),
        requirements=Requirements(cpus=1, memory_mb=256),
    )
    assert (spec.workers, spec.replicas, spec.backend, spec.version) == (4, 1, "embedded", 1)


def test_a_folder_path_means_its_app_json(app_dir: Path) -> None:
    write(app_dir, BASE)
    spec, _ = load_app("squares")
    assert spec.name == "squares"


def test_defaults(app_dir: Path) -> None:
    spec, _ = load_app(write(app_dir, {"name": "x", "tasks": [{"id": "t", "command": "true"}]}))
    t = spec.task("t")
    assert (t.retries, t.timeout, t.env, t.outputs, t.after) == (2, None, (), (), ())
    assert t.requirements == Requirements() == spec.requirements
    assert (spec.workers, spec.replicas, spec.backend, spec.files) == (None, 0, "embedded", ())


def test_task_requirements_override_app_defaults_per_field(app_dir: Path) -> None:
    data = {
        "name": "x",
        "requirements": {"cpus": 2, "memory_mb": 100, "os": "linux"},
        "tasks": [
            {"id": "a", "command": "true", "requirements": {"memory_mb": 900, "arch": "x86_64"}},
            {"id": "b", "command": "true", "requirements": {"os": None}},
        ],
    }
    spec, _ = load_app(write(app_dir, data))
    assert spec.task("a").requirements == Requirements(2, 900, "linux", "x86_64")
    assert spec.task("b").requirements == Requirements(2, 100, None, None)


def test_tasks_come_in_topological_order_ties_by_declaration(app_dir: Path) -> None:
    data = {
        "name": "x",
        "tasks": [
            {"id": "z", "command": "true", "after": ["m", "b"]},
            {"id": "m", "command": "true", "after": ["b"]},
            {"id": "c", "command": "true"},
            {"id": "b", "command": "true"},
            {"id": "a", "command": "true"},
        ],
    }
    spec, _ = load_app(write(app_dir, data))
    assert [t.id for t in spec.tasks] == ["c", "b", "m", "z", "a"]
    assert spec.task("z").after == ("b", "m")


def test_glob_after_uses_fnmatch(app_dir: Path) -> None:
    data = {
        "name": "x",
        "tasks": [
            {"id": "p-1", "command": "true"},
            {"id": "p-22", "command": "true"},
            {"id": "q-1", "command": "true"},
            {"id": "one", "command": "true", "after": ["p-?"]},
            {"id": "all", "command": "true", "after": ["[pq]-*", "p-1"]},
        ],
    }
    spec, _ = load_app(write(app_dir, data))
    assert spec.task("one").after == ("p-1",)
    assert spec.task("all").after == ("p-1", "p-22", "q-1")


def test_timeout_env_and_string_command(app_dir: Path) -> None:
    data = {
        "name": "x",
        "tasks": [
            {
                "id": "t",
                "command": "echo $A",
                "timeout": 5,
                "env": {"B": "2", "A": "1"},
                "retries": 0,
            }
        ],
    }
    t = load_app(write(app_dir, data))[0].task("t")
    assert (t.command, t.timeout, t.retries, t.uses_shell) == ("echo $A", 5.0, 0, True)
    assert t.env == (("A", "1"), ("B", "2"))
    assert t.env_dict() == {"A": "1", "B": "2"}


def test_predecessors_may_share_an_output_name_with_unrelated_tasks(app_dir: Path) -> None:
    # Only direct predecessors of one task meet in its working folder.
    data = {
        "name": "x",
        "tasks": [
            {"id": "a", "command": "true", "outputs": ["o.txt"]},
            {"id": "b", "command": "true", "outputs": ["o.txt"]},
            {"id": "c", "command": "true", "after": ["a"], "outputs": ["o.txt"]},
            {"id": "d", "command": "true", "after": ["c"]},
        ],
    }
    spec, _ = load_app(write(app_dir, data))
    assert spec.task("d").after == ("c",)


def _set(path: list[object], value: object) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        target: Any = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _tasks(*tasks: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        d["tasks"] = list(tasks)
        d.pop("sweeps")

    return edit


def _cmd(id: str, **more: Any) -> dict[str, Any]:
    return {"id": id, "command": ["true"], **more}


MALFORMED: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "version",
        _set(["version"], 2),
        "version: unsupported version 2 (this bjgrid reads version 1)",
    ),
    (
        "unknown-top-key",
        _set(["wokers"], 3),
        f"wokers: unknown key (expected one of: {KEYS})",
    ),
    (
        "unknown-task-key",
        _set(["tasks", 0, "comand"], "x"),
        f"tasks[0].comand: unknown key (expected one of: {TASK_KEYS})",
    ),
    (
        "unknown-template-key",
        _set(["sweeps", 0, "template", "output"], []),
        f"sweeps[0].template.output: unknown key (expected one of: {TASK_KEYS})",
    ),
    (
        "unknown-requirement",
        _set(["requirements", "gpus"], 1),
        "requirements.gpus: unknown key "
        "(expected one of: cpus, memory_mb, os, arch, network, attributes)",
    ),
    ("bad-name", _set(["name"], "my app"), f"name: 'my app' is not a valid app name ({NAME_RULE})"),
    ("missing-name", lambda d: d.pop("name"), "missing required key 'name'"),
    (
        "missing-command",
        _set(["tasks", 0], {"id": "sum"}),
        "tasks[0]: missing required key 'command'",
    ),
    (
        "wrong-type",
        _set(["tasks", 0, "retries"], "3"),
        "tasks[0].retries: expected an integer, got string",
    ),
    (
        "bool-is-not-int",
        _set(["requirements", "cpus"], True),
        "requirements.cpus: expected an integer, got boolean",
    ),
    (
        "command-type",
        _set(["tasks", 0, "command"], {"argv": []}),
        "tasks[0].command: expected an array of strings or a string, got object",
    ),
    ("empty-command", _set(["tasks", 0, "command"], []), "tasks[0].command: empty command"),
    ("workers-zero", _set(["workers"], 0), "workers: must be at least 1, got 0"),
    (
        "timeout-zero",
        _set(["tasks", 0, "timeout"], 0),
        "tasks[0].timeout: must be a positive number of seconds, got 0",
    ),
    (
        "backend",
        _set(["backend"], "slurm"),
        "backend: unknown backend 'slurm' (expected one of: embedded, condor, boinc)",
    ),
    (
        "duplicate-id",
        _tasks(_cmd("a"), _cmd("a")),
        "tasks[1].id: duplicate task id 'a' (also tasks[0].id)",
    ),
    (
        "sweep-duplicate-id",
        _set(["sweeps", 0, "template", "id"], "sq"),
        "sweeps[0].template.id: duplicate task id 'sq' (i=2; also sweeps[0].template.id (i=1))",
    ),
    (
        "bad-task-id",
        _tasks(_cmd("-x")),
        f"tasks[0].id: '-x' is not a valid task id ({NAME_RULE})",
    ),
    (
        "reserved-id",
        _tasks(_cmd("results.json")),
        "tasks[0].id: 'results.json' is reserved (it names the results file)",
    ),
    (
        "cycle",
        _tasks(_cmd("a", after=["c"]), _cmd("b", after=["a"]), _cmd("c", after=["b"])),
        "tasks[0].after: dependency cycle: 'a' after 'c' after 'b' after 'a'",
    ),
    (
        "self-dependency",
        _tasks(_cmd("a", after=["a"])),
        "tasks[0].after[0]: task 'a' cannot run after itself",
    ),
    (
        "glob-matches-self",
        _set(["sweeps", 0, "template", "after"], ["sq-*"]),
        "sweeps[0].template.after[0]: 'sq-*' matches the task itself ('sq-1') (i=1)",
    ),
    (
        "after-matches-nothing",
        _tasks(_cmd("sq-1"), _cmd("sq-2"), _cmd("sum", after=["sq-*x"])),
        "tasks[2].after[0]: 'sq-*x' matches no task",
    ),
    (
        "sweep-after-matches-nothing",
        _set(["sweeps", 0, "template", "after"], ["prep-{i}"]),
        "sweeps[0].template.after[0]: 'prep-1' matches no task (i=1)",
    ),
    (
        "output-clash",
        _tasks(
            _cmd("a", outputs=["x.txt"]),
            _cmd("b", outputs=["./x.txt"]),
            _cmd("c", after=["a", "b"]),
        ),
        "tasks[2].after: predecessors 'a' and 'b' both declare output 'x.txt'",
    ),
    (
        "output-folder-clash",
        _tasks(_cmd("a", outputs=["d"]), _cmd("b", outputs=["d/x"]), _cmd("c", after=["[ab]"])),
        "tasks[2].after: predecessors 'a' and 'b' declare clashing outputs 'd' and 'd/x'",
    ),
    (
        "output-stdout",
        _set(["tasks", 0, "outputs"], ["stdout"]),
        "tasks[0].outputs[0]: 'stdout' is reserved for the task's captured output",
    ),
    (
        "output-absolute",
        _set(["tasks", 0, "outputs"], ["/tmp/total.txt"]),
        "tasks[0].outputs[0]: '/tmp/total.txt': absolute path",
    ),
    (
        "sweep-output-dotdot",
        _set(["sweeps", 0, "template", "outputs"], ["../{i}.txt"]),
        "sweeps[0].template.outputs[0]: '../1.txt': path contains '..' (i=1)",
    ),
    (
        "file-dotdot",
        _set(["files"], ["../square.py"]),
        "files[0]: '../square.py': path contains '..' (files must stay inside the app folder)",
    ),
    (
        "file-absolute",
        _set(["files"], ["/etc/passwd"]),
        "files[0]: '/etc/passwd': absolute path (files must stay inside the app folder)",
    ),
    (
        "file-missing",
        _set(["files"], ["square.py", "nope.py"]),
        "files[1]: 'nope.py' does not exist in the app folder",
    ),
    (
        "file-not-a-folder",
        _set(["files"], ["square.py/"]),
        "files[0]: 'square.py/' is not a folder",
    ),
    (
        "unknown-placeholder",
        _set(["sweeps", 0, "template", "id"], "sq-{j}"),
        "sweeps[0].template.id: unknown placeholder '{j}' (parameters: i)",
    ),
    (
        "bad-format-string",
        _set(["sweeps", 0, "template", "command"], ["python3", "x{"]),
        "sweeps[0].template.command[1]: bad format string 'x{': "
        "Single '{' encountered in format string",
    ),
    (
        "empty-params",
        _set(["sweeps", 0, "params"], {}),
        "sweeps[0].params: no parameters (a sweep needs at least one)",
    ),
    (
        "empty-param-values",
        _set(["sweeps", 0, "params", "i"], []),
        "sweeps[0].params.i: empty list of values",
    ),
    (
        "param-not-scalar",
        _set(["sweeps", 0, "params", "i"], [1, None]),
        "sweeps[0].params.i[1]: expected a string, number or boolean, got null",
    ),
    (
        "no-tasks",
        _tasks(),
        "tasks: no tasks (declare at least one in 'tasks' or 'sweeps')",
    ),
]


@pytest.mark.parametrize(
    ("edit", "message"), [(e, m) for _, e, m in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_malformed_app_gets_a_located_message(
    app_dir: Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = copy.deepcopy(BASE)
    edit(data)
    with pytest.raises(AppError) as info:
        load_app(write(app_dir, data))
    assert str(info.value) == f"squares/app.json: {message}"


def test_error_carries_its_parts(app_dir: Path) -> None:
    data = copy.deepcopy(BASE)
    data["tasks"][0]["after"] = ["sq-*x"]
    with pytest.raises(AppError) as info:
        load_app(write(app_dir, data))
    err = info.value
    assert (err.source, err.field, err.problem) == (
        "squares/app.json",
        "tasks[0].after[0]",
        "'sq-*x' matches no task",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"name": "x",\n "tasks": [}', "invalid JSON at line 2, column 12: Expecting value"),
        ('{"name": "x" "tasks": []}', "invalid JSON at line 1, column 14: Expecting ',' delimiter"),
        ('{"name": "x", "name": "y"}', "invalid JSON: duplicate key 'name'"),
        ('{"name": "x", "workers": NaN}', "invalid JSON: NaN is not valid JSON"),
        ("[1, 2]", "expected a JSON object at the top level, got array"),
    ],
)
def test_bad_json(app_dir: Path, text: str, message: str) -> None:
    (app_dir / "app.json").write_text(text)
    with pytest.raises(AppError) as info:
        load_app("squares/app.json")
    assert str(info.value) == f"squares/app.json: {message}"


def test_missing_app_json(app_dir: Path) -> None:
    with pytest.raises(AppError) as info:
        load_app("squares/app.json")
    assert str(info.value) == "squares/app.json: cannot read: No such file or directory"


def test_symlinked_file_escaping_the_app_folder_is_refused(app_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", app_dir / "link")
    data = copy.deepcopy(BASE)
    data["files"] = ["link"]
    with pytest.raises(AppError) as info:
        load_app(write(app_dir, data))
    assert str(info.value) == "squares/app.json: files[0]: 'link' resolves outside the app folder"


def test_symlink_inside_a_shipped_folder_escaping_is_refused(app_dir: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path, app_dir / "data" / "up")
    with pytest.raises(AppError) as info:
        load_app(write(app_dir, BASE))
    assert str(info.value) == (
        "squares/app.json: files[1]: 'data/up': symbolic link resolves outside the app folder"
    )


def test_symlink_staying_inside_is_fine(app_dir: Path) -> None:
    os.symlink("../square.py", app_dir / "data" / "alias.py")
    spec, _ = load_app(write(app_dir, BASE))
    assert spec.files == ("square.py", "data")


def test_from_json_validates_like_load(app_dir: Path) -> None:
    spec, _ = load_app(write(app_dir, BASE))
    data = spec.to_json()
    data["tasks"][0]["after"] = ["nope"]
    with pytest.raises(AppError) as info:
        AppSpec.from_json(data)
    assert str(info.value) == "<app spec>: tasks[0].after[0]: 'nope' matches no task"


def test_a_task_asks_for_the_network_per_task_or_for_the_whole_app(app_dir: Path) -> None:
    data = {
        "name": "x",
        "requirements": {"network": True},
        "tasks": [
            {"id": "a", "command": "true"},
            {"id": "b", "command": "true", "requirements": {"network": False}},
        ],
    }
    spec, _ = load_app(write(app_dir, data))
    assert spec.task("a").requirements.network is True
    assert spec.task("b").requirements.network is False
    assert AppSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


def test_no_network_is_the_default(app_dir: Path) -> None:
    spec, _ = load_app(write(app_dir, {"name": "x", "tasks": [{"id": "t", "command": "true"}]}))
    assert spec.task("t").requirements.network is False
    assert spec.task("t").to_json()["requirements"]["network"] is False


def test_network_must_be_a_boolean(app_dir: Path) -> None:
    data = {"name": "x", "tasks": [{"id": "t", "command": "true"}], "requirements": {"network": 1}}
    with pytest.raises(AppError, match="network"):
        load_app(write(app_dir, data))
