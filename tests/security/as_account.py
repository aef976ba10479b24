"""Run a hostile-task test body as a real non-root account: the volunteer of the README.

The root suite (``test_hostile_tasks.py``) calls ``run_task`` / ``EmbeddedWorker`` in the test
process, as root. A non-root volunteer's daemon is its owner's own user, so here the very same
calls run in a child process that ``setpriv`` made that user (no supplementary groups), where
the sandbox takes its non-root path: no slot account, no cgroup, bubblewrap.

Parent side (the test, as root): ``Account.run(body, **params)``. Child side (this file run as
a script, as the account)::

    python as_account.py TESTS_DIR MODULE:FUNCTION PARAMS_JSON

imports the body, builds the fixtures it names (``canaries``, ``scratch``, ``tmp_path``,
``config``) from the paths in PARAMS_JSON, calls it, then waits for every other process of its
own uid to be gone: a process of the task that outlived ``run_task`` is a failure (bubblewrap
numbers a task's processes in its own PID namespace, so the pids a task prints mean nothing
here; the account's process list does). It prints one JSON line: the isolation mode it ran
under and the processes left. An assertion of the body fails the child with its traceback.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve()
LEFTOVER_PATIENCE = 10.0
"""Seconds the task's last processes may take to die after ``run_task`` returned (the kernel
tears a PID namespace down asynchronously)."""
RUN_TIMEOUT = 240.0
"""Seconds one body may take as the account (a hung daemon loop fails, never hangs the suite)."""


@dataclass(frozen=True)
class Account:
    """A throwaway non-root account, its home (canaries, its work dir) and its scratch."""

    uid: int
    gid: int
    home: Path
    scratch: Path
    key: Path
    log: Path

    def run(self, body: Callable[..., object], **params: object) -> dict[str, Any]:
        """Run ``body`` as this account (see the module docstring); returns the child's report
        once its assertions held, no process of the task was left, and bubblewrap confined it."""
        from bonjourgrid.testbed.run_as import python_for_others

        spec = f"{body.__module__}:{body.__name__}"
        args = {"scratch": str(self.scratch), "key": str(self.key), "log": str(self.log),
                "home": str(self.home), **params}  # fmt: skip
        site = sysconfig.get_paths()["purelib"]
        cmd = [
            "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--",
            python_for_others(), "-S", str(_HERE), site, str(_HERE.parent.parent), spec,
            json.dumps(args),
        ]  # fmt: skip
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8"}
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, cwd=self.home,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 0, f"{spec} as uid {self.uid}:\n{done.stderr[-6000:]}"
        report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        assert report["uid"] == self.uid != 0 and report["isolation"] == "bwrap", report
        for canary in (self.key, self.log):  # nor in what the sandbox logged
            assert canary.read_text().strip() not in done.stdout + done.stderr, canary
        assert report["leftover"] == [], f"processes of the task outlived it: {report}"
        return report


# --- child side ---------------------------------------------------------------------------


def _adapt_root_suite() -> None:
    """The root suite finds a task's escaped processes by the pid they print and by their slot
    uid; as the account, both mean "this uid's processes but the driver" (a pid printed inside
    bubblewrap's PID namespace names another process here, often a kernel thread)."""
    import security.test_hostile_tasks as hostile

    me = os.getpid()

    def gone(pid: int, within: float = LEFTOVER_PATIENCE) -> bool:  # any pid: see above
        return not _leftover(within)

    def uid_of(pid: int) -> int:  # this account stands for the root suite's slot accounts
        return hostile.UID_BASE if pid != me and _uid_of(pid) == os.getuid() else -1

    hostile.gone = gone
    hostile._uid_of = uid_of


def _uid_of(pid: int) -> int:
    import psutil

    try:
        return int(psutil.Process(pid).uids().real)
    except psutil.Error:
        return -1


def _fixtures(params: dict[str, Any]) -> dict[str, object]:
    from security.test_hostile_tasks import CONFIG, Canaries

    key, log = Path(params["key"]), Path(params["log"])
    facts = {p: (p.read_bytes(), os.stat(p).st_mtime_ns, os.stat(p).st_ino) for p in (key, log)}
    tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=params["home"]))
    return {
        "canaries": Canaries(key, log, facts),
        "scratch": Path(params["scratch"]),
        "tmp_path": tmp,
        "config": CONFIG,
    }


def _others_of_my_uid() -> list[str]:
    """This uid's live processes but this one: what a task may have left behind."""
    import psutil

    me, found = os.getpid(), []
    for p in psutil.process_iter(["uids", "status", "cmdline"]):
        info = p.info
        if p.pid == me or not info["uids"] or info["uids"].real != os.getuid():
            continue
        if info["status"] != psutil.STATUS_ZOMBIE:
            found.append(f"{p.pid} {' '.join(info['cmdline'] or ())[:120]}")
    return found


def _leftover(within: float = LEFTOVER_PATIENCE) -> list[str]:
    deadline = time.monotonic() + within
    while (left := _others_of_my_uid()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def main(argv: list[str]) -> int:
    site_dir, tests_dir, spec, raw = argv
    import site

    site.addsitedir(site_dir)
    sys.path.insert(0, tests_dir)
    from bonjourgrid.ce_backends.embedded import bwrap

    params = json.loads(raw)
    module, name = spec.split(":")
    body = getattr(importlib.import_module(module), name)
    _adapt_root_suite()
    fixtures = _fixtures(params)
    wanted = inspect.signature(body).parameters
    kwargs = {k: fixtures.get(k, params.get(k)) for k in wanted}
    body(**kwargs)
    mode = bwrap.isolation_for("", False).mode
    print(json.dumps({"isolation": mode, "uid": os.getuid(), "leftover": _leftover()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
