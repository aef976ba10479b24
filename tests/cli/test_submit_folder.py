"""`bjgrid submit DIR` runs DIR/app.json (docs/app-format.md); a folder without one is bad
input with a clear message. The folder form running end to end is in test_submit_local.py
(the `failing` app is submitted as its folder)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from bonjourgrid.cli.main import cli


def submit(tmp_path: Path, *args: str) -> Result:
    env = {"BJGRID_HOME": str(tmp_path / "home"), "BJGRID_KEY_FILE": str(tmp_path / "no.key")}
    return CliRunner().invoke(cli, ["submit", *args], catch_exceptions=False, env=env)


def test_a_folder_is_read_through_its_app_json(tmp_path: Path) -> None:
    d = tmp_path / "app"
    d.mkdir()
    doc = {"name": "n", "tasks": [{"id": "a", "command": ["true"]}], "workers": 0}
    (d / "app.json").write_text(json.dumps(doc))
    result = submit(tmp_path, str(d) + "/")
    assert result.exit_code == 2
    # the folder's app.json was read and validated (its bad field named), not refused as a dir
    assert "app.json" in result.stderr and "workers" in result.stderr, result.stderr
    assert "is a directory" not in result.stderr


def test_a_folder_without_app_json_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = submit(tmp_path, str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert "empty/app.json" in result.stderr and "cannot read" in result.stderr
    assert "Traceback" not in result.stderr
