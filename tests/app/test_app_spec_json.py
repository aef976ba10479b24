"""AppSpec.to_json / from_json: a lossless round trip through real JSON text."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bonjourgrid.app import BACKENDS, AppSpec, Requirements, TaskSpec

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,12}", fullmatch=True).filter(
    lambda s: s != "results.json"
)
words = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=8)
requirements = st.builds(
    Requirements,
    cpus=st.integers(1, 64),
    memory_mb=st.integers(0, 10**6),
    os=st.none() | st.sampled_from(["linux", "darwin"]),
    arch=st.none() | st.sampled_from(["x86_64", "aarch64"]),
    network=st.booleans(),
)
commands = st.lists(words, min_size=1, max_size=4).filter(lambda a: a[0] != "").map(
    tuple
) | words.filter(lambda s: s.strip() != "")
envs = st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,6}", fullmatch=True), words, max_size=3)


@st.composite
def app_specs(draw: st.DrawFn) -> AppSpec:
    names = draw(st.lists(ids, min_size=1, max_size=8, unique=True))
    tasks = []
    for n, tid in enumerate(names):
        earlier = names[:n]
        after = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        # outputs live under the task's own id, so predecessors never clash
        outs = draw(st.lists(st.sampled_from(["a.txt", "b/c", "d"]), unique=True))
        tasks.append(
            TaskSpec(
                id=tid,
                command=draw(commands),
                outputs=tuple(f"{tid}/{o}" for o in outs),
                after=tuple(sorted(after)),
                retries=draw(st.integers(0, 5)),
                timeout=draw(st.none() | st.floats(0.001, 1e6)),
                env=tuple(sorted(draw(envs).items())),
                requirements=draw(requirements),
            )
        )
    return AppSpec(
        name=draw(ids),
        tasks=tuple(tasks),
        files=tuple(draw(st.lists(st.sampled_from(["a.py", "data", "x/y.bin"]), unique=True))),
        workers=draw(st.none() | st.integers(1, 100)),
        replicas=draw(st.integers(0, 5)),
        backend=draw(st.sampled_from(BACKENDS)),
        requirements=draw(requirements),
    )


@settings(max_examples=100, deadline=None)
@given(app_specs())
def test_round_trip_through_json_text_is_lossless(spec: AppSpec) -> None:
    text = json.dumps(spec.to_json())
    assert AppSpec.from_json(json.loads(text)) == spec


def test_to_json_is_a_plain_app_json() -> None:
    spec = AppSpec(
        name="x",
        tasks=(
            TaskSpec(id="a", command="true", timeout=1.5),
            TaskSpec(id="b", command=("echo", "hi"), after=("a",), env=(("K", "v"),)),
        ),
    )
    assert spec.to_json() == {
        "version": 1,
        "name": "x",
        "files": [],
        "tasks": [
            {
                "id": "a",
                "command": "true",
                "outputs": [],
                "after": [],
                "retries": 2,
                "timeout": 1.5,
                "env": {},
                "requirements": {
                    "cpus": 1,
                    "memory_mb": 0,
                    "os": None,
                    "arch": None,
                    "network": False,
                },
            },
            {
                "id": "b",
                "command": ["echo", "hi"],
                "outputs": [],
                "after": ["a"],
                "retries": 2,
                "env": {"K": "v"},
                "requirements": {
                    "cpus": 1,
                    "memory_mb": 0,
                    "os": None,
                    "arch": None,
                    "network": False,
                },
            },
        ],
        "replicas": 0,
        "backend": "embedded",
        "requirements": {"cpus": 1, "memory_mb": 0, "os": None, "arch": None, "network": False},
    }
    assert spec.task("b").after == ("a",)
