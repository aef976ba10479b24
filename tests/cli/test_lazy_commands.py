"""`bjgrid join` loads only what the daemon needs (issue 15's RSS goal): subcommands are
imported lazily, rich only when something is printed with it; `bjgrid --help` still lists
every command."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from bonjourgrid.cli.main import COMMANDS, cli

PROBE = """
import json, sys
from bonjourgrid.cli.main import cli
try:
    cli(["join", "--help"], standalone_mode=False)
finally:
    print(json.dumps(sorted(m for m in sys.modules if m.startswith(("bonjourgrid.cli.", "rich")))))
"""


def test_join_imports_no_other_command_and_no_rich() -> None:
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    loaded = set(json.loads(r.stdout.splitlines()[-1]))
    for other in ("submit", "progress", "demo", "apps", "watch", "results", "app_follow"):
        assert f"bonjourgrid.cli.{other}" not in loaded
    assert not any(m == "rich" or m.startswith("rich.") for m in loaded)


def test_help_lists_every_command_and_each_resolves() -> None:
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0, r.output
    for name in COMMANDS:
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        assert command is not None and command.name == name
        assert command.hidden or f"  {name} " in r.output
    assert cli.get_command(None, "nope") is None  # type: ignore[arg-type]
