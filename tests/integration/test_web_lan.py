"""The live web view in a real headless Chromium on a virtual LAN (issue 17's "done when").

Four hosts run real `bjgrid join` (real mDNS on the LAN's bridge); h3 is paused with `bjgrid
pause`. Debian's ``chromium`` runs inside h4's namespaces and opens the view h4's daemon
serves on its own loopback (the URL, token included, is the one `bjgrid status --web` prints
there). Through the DOM: the four machines with their states (h3 paused, the others idle),
then an app of a few short tasks submitted on h4, seen running on volunteers and its progress
moving to done, and its task table. A screenshot is written as a test artifact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bonjourgrid.testbed import Host, VirtualLan
from bonjourgrid.testbed.browser import Chromium, texts
from bonjourgrid.testbed.grid import Grid, patience

pytestmark = [pytest.mark.vlan, pytest.mark.chromium]

TASKS = 6
TASK_SECONDS = 3
"""Long enough that the page (updated about every second) sees the app half done."""
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
"""Where artifacts are copied when $BJGRID_ARTIFACTS is not set (git-ignored)."""


def artifact(path: Path) -> Path:
    """Copy ``path`` to $BJGRID_ARTIFACTS (or test-artifacts/); the copy's path."""
    folder = Path(os.environ.get("BJGRID_ARTIFACTS") or ARTIFACTS)
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(path, folder / path.name))


def machines(b: Chromium) -> dict[str, str]:
    """Host name → state of each row of the page's machine table."""
    rows = b.evaluate(
        "[...document.querySelectorAll('#machines tbody tr')]"
        ".map(r => [r.querySelector('td.host').textContent, r.getAttribute('data-state')])"
    )
    return {str(h): str(s) for h, s in rows}


def app_row(b: Chromium, app: str) -> dict[str, str] | None:
    """The page's row of ``app``: its state and its counts line ("2 done · 2 running")."""
    got = b.evaluate(
        f"""(() => {{
        const r = document.querySelector('#apps tbody tr[data-app={json.dumps(app)}]');
        if (!r) return null;
        const c = r.querySelector('.counts');
        return {{state: r.querySelector('td.state').textContent,
                 counts: c ? c.textContent : ''}};
        }})()"""
    )
    return dict(got) if got else None


def counts_of(line: str) -> dict[str, int]:
    return {k: int(n) for n, k in re.findall(r"(\d+) ([a-z-]+)", line)}


def web_url(grid: Grid, host: Host) -> str:
    r = grid.cli(host, "status", "--web", timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    url = r.stdout.decode().strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]{20,}", url), url
    return url


def test_the_web_view_shows_the_lan_and_an_app_moving_to_done(
    vlan: Callable[..., VirtualLan], tmp_path: Path
) -> None:
    lan = vlan(4)
    grid = Grid(lan)
    h3, h4 = lan.hosts[2], lan.hosts[3]
    grid.join_all(lan.hosts, "--slots", "1")
    grid.wait_idle(h4, lan.hosts)
    r = grid.cli(h3, "pause", "--json", timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    url = web_url(grid, h4)

    app_dir = tmp_path / "app"
    app_dir.mkdir()
    tasks = [{"id": f"t{i}", "command": f"sleep {TASK_SECONDS}"} for i in range(TASKS)]
    (app_dir / "app.json").write_text(json.dumps({"name": "webdemo", "workers": 3, "tasks": tasks}))

    with Chromium(popen=h4.popen, width=1280, height=1000) as b:
        b.navigate(url)
        b.wait_for("document.getElementById('conn').textContent === 'live'", timeout=60)
        want = {"h1": "idle", "h2": "idle", "h3": "paused", "h4": "idle"}
        deadline = time.monotonic() + patience(30.0)
        while machines(b) != want and time.monotonic() < deadline:
            time.sleep(0.5)
        assert machines(b) == want
        chips = texts(b, "#machine-counts .chip")
        assert sorted(chips) == ["1 paused", "3 idle"], chips
        grid_line = b.evaluate("document.getElementById('grid').textContent")
        assert grid_line == f"grid {grid.key.grid_id} · seen from h4"

        proc = grid.popen_cli(
            h4, "submit", str(app_dir), "--output", str(tmp_path / "out"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        first = proc.stdout.readline().decode().strip()
        m = re.fullmatch(r"app (\S+)", first)
        assert m, first
        app = m.group(1)

        seen: list[dict[str, int]] = []
        workers_seen: set[str] = set()
        deadline = time.monotonic() + patience(120.0)
        while time.monotonic() < deadline:
            row = app_row(b, app)
            if row is not None:
                counts = counts_of(row["counts"])
                if not seen or counts != seen[-1]:
                    seen.append(counts)
                if counts.get("done") == TASKS:
                    break
            for host, state in machines(b).items():
                if state == "worker":
                    workers_seen.add(host)
            time.sleep(0.2)
        assert seen and seen[-1] == {"done": TASKS}, seen
        midway = [c for c in seen if 0 < c.get("done", 0) < TASKS]
        assert midway, f"never seen part done: {seen}"  # progress moved, not only the end
        assert workers_seen and "h3" not in workers_seen, workers_seen  # paused: no work

        _, err = proc.communicate(timeout=patience(60.0))
        assert proc.returncode == 0, err.decode(errors="replace")[-3000:]

        sel = f"#apps tbody tr[data-app={json.dumps(app)}]"
        b.wait_for(f"document.querySelector({json.dumps(sel + ' td.state')}).textContent"
                   " === 'finished'", timeout=30)  # fmt: skip
        b.evaluate(f"document.querySelector({json.dumps(sel)}).click()")
        b.wait_for(
            f"document.querySelectorAll('#tasks tbody tr[data-state=done]').length === {TASKS}",
            timeout=30,
        )
        assert sorted(texts(b, "#tasks td.task")) == [f"t{i}" for i in range(TASKS)]
        workers = set(texts(b, "#tasks td.worker"))
        assert workers and workers <= {"h1", "h2", "h4"}, workers
        deadline = time.monotonic() + patience(30.0)
        while machines(b) != want and time.monotonic() < deadline:
            time.sleep(0.5)
        assert machines(b) == want  # the volunteers are idle again

        shot = tmp_path / "web-view.png"
        b.screenshot(shot)
        b.phone()  # readable on a phone: nothing wider than the screen
        b.wait_for("getComputedStyle(document.querySelector('#machines thead')).display"
                   " === 'none'", timeout=10)  # fmt: skip
        assert b.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        phone = tmp_path / "web-view-phone.png"
        b.screenshot(phone)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000, len(data)  # not blank
    for png in (shot, phone):
        print(f"\nweb view screenshot: {png}\n  copied to {artifact(png)}")
