"""`bjgrid join` loads only what the daemon needs (issue 15's RSS goal): subcommands are
imported lazily, rich only when something is printed with it; `bjgrid --help` still lists
every command."""

from __future__ import annotations

import json
import os
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


RUN_JOIN = """
import json, os, signal, sys, threading, time, urllib.request
from pathlib import Path
from bonjourgrid.cli.main import cli

state = Path(os.environ["BJGRID_HOME"]) / "state"
seen = {}

def web_modules():
    return sorted(m for m in sys.modules if m.startswith("bonjourgrid.web"))

def watch():
    deadline = time.monotonic() + 60
    while not (state / "web.url").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    seen["idle"] = web_modules()
    url = (state / "web.url").read_text().strip()
    with urllib.request.urlopen(url, timeout=20) as r:
        seen["page"] = [r.status, len(r.read())]
    seen["used"] = web_modules()
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=watch, daemon=True).start()
try:
    cli(["join", "--no-mdns", "--listen", "127.0.0.1", "--slots", "1"], standalone_mode=False)
finally:
    print(json.dumps(seen))
"""


def test_an_idle_join_loads_no_web_module_until_a_browser_connects(tmp_path: Path) -> None:
    """The idle cost of `bjgrid join` does not grow with the web view: it binds the view's
    port (hook.py, standard library only) and loads the server on the first request."""
    from bonjourgrid.gridkey import GridKey, write_key

    key = tmp_path / "grid.key"
    write_key(GridKey.generate(), key)
    env = {**os.environ, "BJGRID_HOME": str(tmp_path / "home"), "BJGRID_KEY_FILE": str(key)}
    env.pop("BJGRID_WEB_LISTEN", None)
    r = subprocess.run(
        [sys.executable, "-c", RUN_JOIN], capture_output=True, text=True, timeout=120, env=env
    )
    assert r.stdout.strip(), r.stderr[-3000:]
    seen = json.loads(r.stdout.splitlines()[-1])
    assert seen["idle"] == ["bonjourgrid.web", "bonjourgrid.web.hook"], seen
    assert seen["page"][0] == 200 and seen["page"][1] > 1000
    for loaded in ("server", "page", "http", "access", "source", "snapshot"):
        assert f"bonjourgrid.web.{loaded}" in seen["used"]
    assert not (tmp_path / "home" / "state" / "web.url").exists()  # removed at the stop


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
