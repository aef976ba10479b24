"""`bjgrid status --web` finds a running `bjgrid demo --web`'s URL, and only a live one's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bonjourgrid.cli.demo_web import DEMO_URL_FILE, demo_url


def test_a_demo_url_is_given_only_while_its_demo_runs(tmp_path: Path) -> None:
    url = "http://127.0.0.1:4000/?token=abc"
    assert demo_url(tmp_path) is None
    (tmp_path / DEMO_URL_FILE).write_text(f"{os.getpid()} {url}\n")
    assert demo_url(tmp_path) == url
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / DEMO_URL_FILE).write_text(f"{gone.pid} {url}\n")
    assert demo_url(tmp_path) is None  # its demo ended without removing it
    (tmp_path / DEMO_URL_FILE).write_text(f"{os.getpid()} http://attacker.example/\n")
    assert demo_url(tmp_path) is None  # only a loopback URL is printed
