"""`bjgrid join` loads only what the daemon needs (issue 15's RSS goal): subcommands are
imported lazily, rich only when something is printed with it; `bjgrid --help` still lists
every command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


KEY_PROBE = """
import json, sys
from pathlib import Path
import bonjourgrid.cli.join, bonjourgrid.daemon.node
from bonjourgrid.daemon.hostinfo import detect, load_node_key
host = detect(load_node_key(Path(sys.argv[1])))
curves = sorted(m for m in sys.modules if m.startswith(("cryptography", "nacl")))
print(json.dumps([host.node_id, curves]))
"""


def test_a_daemon_with_its_key_made_loads_no_curve_code_until_it_signs(tmp_path: Path) -> None:
    """The curve code (and `cryptography`) is loaded at the first handshake, not by an idle
    volunteer: the node id comes from the public key stored in node.key, and the first start
    makes the key in a short-lived child."""

    def probe() -> tuple[str, list[str]]:
        r = subprocess.run(
            [sys.executable, "-c", KEY_PROBE, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        node, loaded = json.loads(r.stdout.splitlines()[-1])
        return node, loaded

    first, loaded_first = probe()  # makes the key, in a child: this process stays lean
    again, loaded = probe()
    assert again == first
    assert loaded_first == loaded == []
