"""`bjgrid demo --web` and `bjgrid status --web` (the README's quickstart): the demo grid's
web view, served inside the demo LAN, is reachable from this machine's loopback with its
token, shows the demo's machines and its app finishing, and goes away with the demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bonjourgrid.testbed.grid import CLI, patience

pytestmark = pytest.mark.vlan  # conftest skips it (or fails it under CI) without namespaces


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_demo_web_serves_the_demo_grid_and_status_web_prints_its_url(tmp_path: Path) -> None:
    env = {**os.environ, "BJGRID_HOME": str(tmp_path / "home")}
    env.pop("BJGRID_WEB_LISTEN", None)
    log = tmp_path / "demo.log"
    with open(log, "wb") as f:
        demo = subprocess.Popen(
            [*CLI, "demo", "--web", "--hosts", "2", "-o", str(tmp_path / "out")],
            env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        url = ""
        deadline = time.monotonic() + patience(120.0)
        while not url and time.monotonic() < deadline and demo.poll() is None:
            r = subprocess.run([*CLI, "status", "--web"], env=env, capture_output=True, timeout=60)
            url = r.stdout.decode().strip() if r.returncode == 0 else ""
            time.sleep(0.5)
        assert url.startswith("http://127.0.0.1:"), log.read_text(errors="replace")[-3000:]
        base, _, query = url.partition("/?")
        assert get(f"{base}/state.json")[0] == 401  # the relay keeps the view's token check

        doc: dict[str, object] = {}
        deadline = time.monotonic() + patience(180.0)
        while time.monotonic() < deadline:
            code, body = get(f"{base}/state.json?{query}")
            assert code == 200
            doc = json.loads(body)
            apps = doc["apps"]
            assert isinstance(apps, list)
            if any(a["state"] == "finished" for a in apps):
                break
            time.sleep(0.5)
        hosts = {m["host"] for m in doc["machines"]}  # type: ignore[attr-defined]
        assert {"h1", "h2"} <= hosts, doc
        (app,) = doc["apps"]  # type: ignore[misc]
        assert app["name"] == "squares" and app["state"] == "finished", app
        assert app["counts"].get("done") == sum(app["counts"].values()) > 0, app
        code, page = get(url)
        assert code == 200 and b"<title>bonjourgrid</title>" in page
        deadline = time.monotonic() + patience(60.0)
        while b"Ctrl-C ends the demo" not in log.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.2)  # the demo is done and waits with its view open
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
        rc = demo.wait(patience(60.0))
    out = log.read_text(errors="replace")
    assert rc == 0, out[-3000:]
    assert "sum of squares 1..12 = 650" in out and "demo web view: http://127.0.0.1:" in out
    r = subprocess.run([*CLI, "status", "--web"], env=env, capture_output=True, timeout=60)
    assert r.returncode != 0 and b"bjgrid demo --web" in r.stderr  # gone with the demo
    assert not (tmp_path / "home" / "state" / "demo-web.url").exists()
