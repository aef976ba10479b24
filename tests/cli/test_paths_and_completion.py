"""`bjgrid paths` prints where config, state and logs live, creating nothing; shell
completion works as docs/cli.md says."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bonjourgrid.cli.main import cli


def test_paths_follow_bjgrid_home_and_create_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = CliRunner().invoke(cli, ["paths", "--json"], env={"BJGRID_HOME": str(home),
                                                          "BJGRID_KEY_FILE": None})  # fmt: skip
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["config"] == str(home / "config") and got["log"] == str(home / "log")
    assert got["key"] == str(home / "config" / "grid.key")
    assert not home.exists()


def test_a_hostile_home_path_is_printed_not_interpreted(tmp_path: Path) -> None:
    home = tmp_path / "[bold]x\x1b[2J"
    r = CliRunner().invoke(cli, ["paths"], env={"BJGRID_HOME": str(home)})
    assert r.exit_code == 0
    assert "[bold]x" in r.stdout  # plain echo: markup is not interpreted ...
    assert "\x1b" not in r.stdout  # ... and no escape reaches a stdout that is not a terminal


def test_bash_completion_lists_the_commands() -> None:
    r = CliRunner().invoke(cli, [], env={"_BJGRID_COMPLETE": "bash_complete",
                                         "COMP_WORDS": "bjgrid wa", "COMP_CWORD": "1"},
                           prog_name="bjgrid")  # fmt: skip
    assert "watch" in r.output
    doc = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    assert "_BJGRID_COMPLETE=bash_source bjgrid" in doc
