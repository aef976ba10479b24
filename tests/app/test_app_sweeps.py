"""Sweep expansion: Cartesian products, str.format rules, shell quoting in string commands."""

from __future__ import annotations

import shlex
import subprocess
from typing import Any

import pytest

from bonjourgrid.app import AppError, AppSpec, parse_app
from bonjourgrid.app.sweeps import SweepError, combinations, expand_text


def parse(data: dict[str, Any]) -> AppSpec:
    return parse_app(data, app_dir=None, source="app.json")


def sweep(template: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    return {"name": "s", "sweeps": [{"template": template, "params": params}]}


def test_cartesian_product_in_declaration_order_last_param_fastest() -> None:
    spec = parse(sweep({"id": "t-{a}-{b}", "command": ["x"]}, {"a": [1, 2], "b": ["x", "y", "z"]}))
    assert [t.id for t in spec.tasks] == ["t-1-x", "t-1-y", "t-1-z", "t-2-x", "t-2-y", "t-2-z"]
    assert list(combinations({"a": [1], "b": [True, 2.5]})) == [
        {"a": 1, "b": True},
        {"a": 1, "b": 2.5},
    ]


def test_every_expandable_field_is_expanded() -> None:
    data = {
        "name": "s",
        "tasks": [{"id": "prep-7", "command": "true"}],
        "sweeps": [
            {
                "template": {
                    "id": "run-{n}",
                    "command": ["prog", "--n={n}", "{{literal}}"],
                    "outputs": ["out/{n:03d}.txt"],
                    "after": ["prep-{n}"],
                    "env": {"N": "{n}", "BRACES": "{{x}}"},
                    "retries": 1,
                },
                "params": {"n": [7]},
            }
        ],
    }
    t = parse(data).task("run-7")
    assert t.command == ("prog", "--n=7", "{literal}")
    assert t.outputs == ("out/007.txt",)
    assert t.after == ("prep-7",)
    assert t.env_dict() == {"N": "7", "BRACES": "{x}"}
    assert t.retries == 1


def test_string_command_values_are_shell_quoted_argv_values_are_not() -> None:
    nasty = "a b; rm -rf / $(x) 'q'"
    spec = parse(
        {
            "name": "s",
            "sweeps": [
                {
                    "template": {"id": "s-{i}", "command": "echo {v}"},
                    "params": {"i": [1], "v": [nasty]},
                },
                {
                    "template": {"id": "l-{i}", "command": ["echo", "{v}"]},
                    "params": {"i": [1], "v": [nasty]},
                },
            ],
        }
    )
    assert spec.task("s-1").command == "echo " + shlex.quote(nasty)
    assert spec.task("l-1").command == ("echo", nasty)


def test_quoted_string_command_passes_the_value_as_one_word() -> None:
    nasty = "two words; echo INJECTED"
    spec = parse(sweep({"id": "t", "command": "printf '%s|' {v}"}, {"v": [nasty]}))
    cmd = spec.task("t").command
    assert isinstance(cmd, str)
    out = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, check=True)
    assert out.stdout == nasty + "|"


def test_format_specs_and_conversions_work() -> None:
    assert expand_text("{x:>4}|{x!r}|{y:.2f}", {"x": "a", "y": 2}) == "   a|'a'|2.00"


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{}", "unknown placeholder '{}' (parameters: i)"),
        ("{0}", "unknown placeholder '{0}' (parameters: i)"),
        ("{i.real}", "unknown placeholder '{i.real}' (parameters: i)"),
        ("{i[0]}", "unknown placeholder '{i[0]}' (parameters: i)"),
        ("}", "bad format string '}': Single '}' encountered in format string"),
        ("{i:d}", "bad format spec 'd' for 'x': Unknown format code 'd' for object of type 'str'"),
    ],
)
def test_bad_templates_are_refused(template: str, problem: str) -> None:
    with pytest.raises(SweepError) as info:
        expand_text(template, {"i": "x"})
    assert str(info.value) == problem


def test_error_in_string_command_names_the_sweep_field() -> None:
    with pytest.raises(AppError) as info:
        parse(sweep({"id": "t-{i}", "command": "run {j}"}, {"i": [1]}))
    assert str(info.value) == (
        "app.json: sweeps[0].template.command: unknown placeholder '{j}' (parameters: i)"
    )


def test_bad_param_name() -> None:
    with pytest.raises(AppError) as info:
        parse(sweep({"id": "t", "command": "x"}, {"a-b": [1]}))
    assert str(info.value) == (
        "app.json: sweeps[0].params.a-b: 'a-b' is not a valid parameter name (an identifier)"
    )


def test_sweep_tasks_follow_plain_tasks_in_declaration_order() -> None:
    data = sweep({"id": "t-{i}", "command": "x"}, {"i": [2, 1]})
    data["tasks"] = [{"id": "first", "command": "x"}]
    assert [t.id for t in parse(data).tasks] == ["first", "t-2", "t-1"]
