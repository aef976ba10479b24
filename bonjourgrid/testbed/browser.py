"""A real headless Chromium driven over the DevTools protocol on a pipe (no port opened, no
websocket library): ``--remote-debugging-pipe`` reads commands on fd 3 and answers on fd 4,
each message JSON ended by a NUL byte. Tests read the page's DOM and take screenshots.

``wrap`` runs it elsewhere (a virtual-LAN host: ``Host.command``); the pipes survive the
``ip netns exec``/``unshare``/``sh`` chain, which only execs."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    def __init__(
        self,
        *,
        wrap: Callable[[list[str]], list[str]] | None = None,
        popen: Callable[..., subprocess.Popen[bytes]] | None = None,
        width: int = 1100,
        height: int = 900,
    ) -> None:
        exe = chromium_path()
        if exe is None:
            raise FileNotFoundError("chromium is not installed (scripts/setup --dev installs it)")
        self._profile = tempfile.mkdtemp(prefix="bjg-chromium-")
        argv = [
            exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-dev-shm-usage",
            "--no-proxy-server", "--disable-background-networking", "--disable-sync",
            f"--user-data-dir={self._profile}", f"--window-size={width},{height}",
            "--remote-debugging-pipe", "about:blank",
        ]  # fmt: skip
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        # Far from 3 and 4, so that the child's dup2 onto 3 and 4 clobbers none of them.
        hi = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in (to_r, from_w)]
        for fd in (to_r, from_w):
            os.close(fd)

        def fds() -> None:
            os.dup2(hi[0], 3)
            os.dup2(hi[1], 4)

        argv = wrap(argv) if wrap is not None else argv
        start = popen or subprocess.Popen
        self.log = open(Path(self._profile) / "chromium.log", "wb")  # noqa: SIM115
        self.proc = start(
            argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            preexec_fn=fds, close_fds=False,
        )  # fmt: skip
        for fd in hi:
            os.close(fd)
        self._w, self._r = to_w, from_r
        self._buf = b""
        self._id = 0
        self.session = ""
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
            session=False,
        )  # fmt: skip
        self.session = attached["sessionId"]
        self.call("Runtime.enable")
        self.call("Page.enable")

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: bool = True,
        timeout: float = 30.0,
    ) -> dict[str, Any]:  # fmt: skip
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._r], [], [], left)[0]:
                    raise TimeoutError(f"chromium did not answer {method}: {self.log_text()}")
                chunk = os.read(self._r, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"chromium exited: {self.log_text()}")
                self._buf += chunk
            raw, _, self._buf = self._buf.partition(b"\0")
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return (Path(self._profile) / "chromium.log").read_text(errors="replace")[-2000:]
        return ""

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'", timeout=30)

    def evaluate(self, expression: str) -> Any:
        got = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in got:
            raise RuntimeError(f"{expression}: {got['exceptionDetails']}")
        return got["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float, every: float = 0.25) -> Any:
        """The first truthy value of ``expression``; TimeoutError with the last one."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(every)
        raise TimeoutError(f"{expression} stayed {value!r} for {timeout} s")

    def screenshot(self, path: Path) -> None:
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(shot["data"]))

    def phone(self, width: int = 390, height: int = 844) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True},
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close", session=False, timeout=5)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for fd in (self._w, self._r):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.log.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def texts(browser: Chromium, selector: str) -> Sequence[str]:
    """The textContent of every element matching ``selector``."""
    sel = json.dumps(selector)
    return list(browser.evaluate(f"[...document.querySelectorAll({sel})].map(e => e.textContent)"))
