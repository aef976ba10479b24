"""A real `bjgrid join` whose journal is garbage starts anyway: the bad file is kept aside and
the log says so (issue 12, item 7)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bonjourgrid.gridkey import GridKey, write_key

START_TIMEOUT = 60.0


def test_a_daemon_with_a_garbage_journal_starts_and_keeps_the_bad_file_aside(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    state = home / "state"
    state.mkdir(parents=True)
    garbage = os.urandom(64 * 1024)
    (state / "journal.sqlite").write_bytes(garbage)
    (state / "journal.sqlite-wal").write_bytes(b"\xff" * 1000)
    key_file = tmp_path / "grid.key"
    write_key(GridKey.generate(), key_file)
    env = {
        **os.environ,
        "BJGRID_HOME": str(home),
        "BJGRID_KEY_FILE": str(key_file),
        "BJGRID_PROFILE": "fast",
    }
    log = tmp_path / "join.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bonjourgrid.cli", "join", "--no-mdns", "--listen", "127.0.0.1",
             "--port-file", str(tmp_path / "port")],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (tmp_path / "port").exists():
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
        assert (state / "daemon.sock").exists()
        # It answers the CLI: the daemon is really up, not half-started.
        r = subprocess.run(
            [sys.executable, "-m", "bonjourgrid.cli", "apps", "--json"],
            env=env, capture_output=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr.decode(errors="replace")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    text = log.read_text(errors="replace")
    assert "journal" in text and "moved it aside" in text and "not a database" in text, text
    kept = [p for p in state.iterdir() if p.name.startswith("journal.sqlite.corrupt-")]
    main = [p for p in kept if not p.name.endswith(("-wal", "-shm"))]
    assert [p.read_bytes() for p in main] == [garbage]
    assert [p.read_bytes() for p in kept if p.name.endswith("-wal")] == [b"\xff" * 1000]
    assert (state / "journal.sqlite").read_bytes()[:16] == b"SQLite format 3\x00"
