"""Unit tests: identifier rules (bonjourgrid/ids.py) and the safe-path helper."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bonjourgrid import ids
from bonjourgrid.safepath import UnsafePath, under

HOSTILE = ["../x", "/x", "..", ".", "a/../../b", "a\x00b", "", "a/b", "-x", ".hidden", "x" * 65]


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_ids_are_refused(bad: str) -> None:
    for check in (ids.check_app_id, ids.check_node_id, ids.check_task_id):
        with pytest.raises(ids.IdError):
            check(bad)


def test_good_ids_pass_and_results_json_is_no_task_id() -> None:
    assert ids.check_app_id("sweep.v2_1-a") == "sweep.v2_1-a"
    assert ids.check_app_id("results.json")
    with pytest.raises(ids.IdError, match="reserved"):
        ids.check_task_id("results.json")


@pytest.mark.parametrize("bad", ["/etc/passwd", "../up", "a/../../b", "a\x00", "", ".", "x" * 2000])
def test_hostile_relpaths_are_refused(bad: str) -> None:
    with pytest.raises(ids.IdError):
        ids.check_relpath(bad)


def test_relpaths_users_and_numbers() -> None:
    assert ids.check_relpath("out/a.txt") == "out/a.txt"
    assert ids.check_user("alice@lab") == "alice@lab"
    assert ids.check_user("", empty_ok=True) == ""
    with pytest.raises(ids.IdError):
        ids.check_user("../root")
    with pytest.raises(ids.IdError):
        ids.check_count(-1, "term")
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(ids.IdError):
            ids.check_duration(bad, "lease")


@pytest.mark.parametrize("bad", ["../x", "/x", "..", ".", "a/b", "a\x00b", ""])
def test_under_refuses_components_that_leave_the_root(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UnsafePath):
        under(tmp_path / "root", bad)


def test_under_refuses_a_planted_link_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(tmp_path, root / "evil")
    with pytest.raises(UnsafePath, match="outside"):
        under(root, "evil")
    assert under(root, "app-1", "t.0") == root / "app-1" / "t.0"
