"""`bjgrid demo --web`: the demo grid's live web view, opened from this machine's browser.

The submitting host of the demo LAN runs `bjgrid serve` (a daemon that coordinates and does
not volunteer), so the app is held there and its view shows the machines, the app's progress
and its tasks. That view listens on the host's own loopback, inside its namespace; a relay
(bonjourgrid/testbed/web_relay.py, a Unix socket file between the two namespaces) makes it
reachable at 127.0.0.1 here, with the view's own token. The URL is printed and written, with
this process's id, to ``demo-web.url`` in the state dir (mode 0600), where `bjgrid status
--web` finds it while the demo runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from bonjourgrid.testbed import Host
from bonjourgrid.testbed.grid import Grid, patience
from bonjourgrid.testbed.web_relay import Outer

DEMO_URL_FILE = "demo-web.url"


def demo_url(state_dir: Path) -> str | None:
    """The URL of a running demo's web view (its process alive), else None."""
    try:
        pid_text, _, url = (state_dir / DEMO_URL_FILE).read_text().strip().partition(" ")
        os.kill(int(pid_text), 0)
    except (OSError, ValueError):
        return None
    return url if url.startswith("http://127.0.0.1:") else None


def _wait_for(path: Path, what: str, grid: Grid, host: Host, log: Path) -> None:
    deadline = time.monotonic() + patience(30.0)
    while not path.exists():
        if time.monotonic() > deadline:
            text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise TimeoutError(f"{what} did not start on {host.name}: {text}")
        time.sleep(0.05)


@contextlib.contextmanager
def demo_web_view(grid: Grid, host: Host, tmp: Path, state_dir: Path) -> Iterator[str]:
    """Run `bjgrid serve` on ``host`` and relay its view to 127.0.0.1 here; yields the URL."""
    log = host.home / "serve.log"
    with open(log, "ab") as f:
        grid.popen_cli(host, "serve", "--linger", "0", stdout=f, stderr=f)
    view_file = host.home / "state" / "web.url"
    _wait_for(view_file, "bjgrid serve's web view", grid, host, log)
    inner = urlsplit(view_file.read_text().strip())
    token = parse_qs(inner.query)["token"][0]
    sock = tmp / "web.sock"
    with open(host.home / "relay.log", "ab") as f:
        argv = [sys.executable, "-m", "bonjourgrid.testbed.web_relay", str(sock), str(inner.port)]
        host.popen(argv, stdout=f, stderr=f)
    _wait_for(sock, "the web view's relay", grid, host, host.home / "relay.log")
    outer = Outer(sock)
    url = f"http://127.0.0.1:{outer.port}/?token={token}"
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / DEMO_URL_FILE
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()} {url}\n")
    try:
        yield url
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        outer.close()
