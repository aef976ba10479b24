"""app.schema.json agrees with the loader on structure."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bonjourgrid.app import AppSpec, Requirements, TaskSpec, schema_text
from bonjourgrid.app.fields import REQUIREMENT_KEYS
from bonjourgrid.app.load import APP_KEYS
from bonjourgrid.app.tasks import SWEEP_KEYS, TASK_KEYS

jsonschema = pytest.importorskip("jsonschema")

SCHEMA: dict[str, Any] = json.loads(schema_text())
EXAMPLE: dict[str, Any] = {
    "version": 1,
    "name": "squares",
    "files": ["square.py", "data/"],
    "tasks": [
        {"id": "sum", "command": ["python3", "sum.py"], "after": ["sq-*"], "outputs": ["total.txt"]}
    ],
    "sweeps": [
        {
            "template": {"id": "sq-{i}", "command": "python3 square.py {i}", "outputs": ["o-{i}"]},
            "params": {"i": [1, 2, 3, 4]},
        }
    ],
    "workers": 4,
    "replicas": 1,
    "backend": "embedded",
    "requirements": {"cpus": 1, "memory_mb": 256},
}


def errors(data: object) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [e.message for e in validator.iter_errors(data)]


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_schema_keys_match_the_loader() -> None:
    defs = SCHEMA["$defs"]
    assert tuple(SCHEMA["properties"]) == APP_KEYS
    assert tuple(defs["taskFields"]["properties"]) == TASK_KEYS
    assert tuple(defs["sweep"]["properties"]) == SWEEP_KEYS
    assert tuple(defs["requirements"]["properties"]) == REQUIREMENT_KEYS


def test_example_and_to_json_output_validate() -> None:
    assert errors(EXAMPLE) == []
    spec = AppSpec(
        name="x",
        tasks=(TaskSpec(id="a", command=("true",), requirements=Requirements(os="linux")),),
    )
    assert errors(spec.to_json()) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["version"], 2),
        (["name"], "bad name"),
        (["wokers"], 1),
        (["tasks", 0, "id"], "results.json"),
        (["tasks", 0, "outputs"], ["stdout"]),
        (["tasks", 0, "outputs"], ["../x"]),
        (["tasks", 0, "outputs"], ["/x"]),
        (["tasks", 0, "retries"], -1),
        (["tasks", 0, "command"], []),
        (["files"], ["a/../../b"]),
        (["backend"], "slurm"),
        (["sweeps", 0, "params"], {}),
        (["sweeps", 0, "params", "i"], []),
        (["requirements", "cpus"], 0),
    ],
)
def test_schema_rejects_what_the_loader_rejects(path: list[Any], value: object) -> None:
    data = copy.deepcopy(EXAMPLE)
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert errors(data) != []
