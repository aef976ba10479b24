"""Run one HTCondor ``condor_master`` (and the daemons it starts) for one CE role.

``CondorDaemons(inst, role_dir, config_text)``: ``start()`` writes the config to
``role_dir/condor_config``, makes LOCAL_DIR under ``role_dir/local``, launches
``condor_master -f`` (through ``spawn``, by default in this process's network namespace; a test
passes a virtual-LAN host's ``popen``), and ``wait_ready()`` polls the address files the
daemons write once they listen. ``stop()`` SIGTERMs the master we started (it stops its
children), SIGKILLs what is left of the process tree it had, then removes ``role_dir``.
Usable as a context manager.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import psutil

from bonjourgrid.ce_backends import leftovers
from bonjourgrid.ce_backends.condor.installation import Installation

# Where each daemon writes its address once it listens (relative to LOCAL_DIR; see config.py).
ADDRESS_FILES = {
    "MASTER": "log/.master_address",
    "COLLECTOR": "log/.collector_address",
    "NEGOTIATOR": "log/.negotiator_address",
    "SCHEDD": "spool/.schedd_address",
    "STARTD": "log/.startd_address",
}
LOCAL_SUBDIRS = ("log", "spool", "execute", "run", "lock", "cred")
# SIGTERM to the master stops the tree in ~1.3 s (reference); then SIGKILL.
STOP_GRACE_S = 8.0
POLL_S = 0.05

Spawn = Callable[..., "subprocess.Popen[Any]"]


class DaemonError(RuntimeError):
    """The daemons did not come up (the message quotes their logs)."""


def _default_spawn(argv: Sequence[str], *, stdout: IO[bytes], **_: Any) -> subprocess.Popen[Any]:
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


class CondorDaemons:
    """One condor_master for one role (head or execute node) of one CE."""

    def __init__(
        self,
        inst: Installation,
        role_dir: Path,
        config_text: str,
        *,
        daemons: Sequence[str],
        binds: Sequence[Path] = (),
        spawn: Spawn | None = None,
    ) -> None:
        self.inst = inst
        self.role_dir = Path(role_dir).resolve()
        self.local_dir = self.role_dir / "local"
        self.config_file = self.role_dir / "condor_config"
        self.daemons = [d.upper() for d in daemons]
        self._config_text = config_text
        self._binds = [self.role_dir, *binds]
        self._spawn = spawn or _default_spawn
        self.proc: subprocess.Popen[Any] | None = None
        self._stopped = False

    @property
    def log_dir(self) -> Path:
        return self.local_dir / "log"

    def start(self) -> CondorDaemons:
        """Write the config and launch ``condor_master -f``; returns at once."""
        if self.proc is not None:
            raise RuntimeError("already started")
        self.role_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.role_dir, 0o755)
        self.config_file.write_text(self._config_text)
        owner = self.inst.user_id("condor")
        for sub in LOCAL_SUBDIRS:
            d = self.local_dir / sub
            d.mkdir(parents=True, exist_ok=True)
            if owner is not None:
                os.chown(d, *owner)
        argv = self.inst.argv(
            ["condor_master", "-f"],
            env={"CONDOR_CONFIG": str(self.config_file)},
            binds=self._binds,
        )
        with open(self.role_dir / "master.out", "wb") as out:
            self.proc = self._spawn(argv, stdout=out, stderr=subprocess.STDOUT)
        leftovers.record(self.role_dir, self.proc.pid)  # stopped at the next start if we crash
        return self

    def ready(self) -> bool:
        """Every daemon of the role has written its address file."""
        return all((self.local_dir / ADDRESS_FILES[d]).exists() for d in self.daemons)

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Block until :meth:`ready`; raise :class:`DaemonError` on timeout or master exit."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc is None or self.proc.poll() is not None:
                raise DaemonError(f"condor_master exited early\n{self.diagnostics()}")
            if time.monotonic() > deadline:
                raise DaemonError(f"daemons not ready after {timeout} s\n{self.diagnostics()}")
            time.sleep(POLL_S)

    def log(self, daemon: str) -> str:
        """The text of one daemon's log (``Collector``, ``Master``, ``Sched``, ``Start`` ...)."""
        try:
            return (self.log_dir / f"{daemon}Log").read_text(errors="replace")
        except OSError:
            return ""

    def diagnostics(self, lines: int = 15) -> str:
        parts = []
        for f in [self.role_dir / "master.out", *sorted(self.log_dir.glob("*Log"))]:
            with contextlib.suppress(OSError):
                tail = f.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {f.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def stop(self, *, keep_files: bool = False) -> None:
        """Stop every process we started, then remove ``role_dir``. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            tree = _tree(proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            for p in tree:  # the master kills its children; make sure of it
                with contextlib.suppress(psutil.Error):
                    p.kill()
            psutil.wait_procs(tree, timeout=5)
        self.inst.forget_binds([self.role_dir])  # the other binds may be shared
        if not keep_files:
            shutil.rmtree(self.role_dir, ignore_errors=True)

    def __enter__(self) -> CondorDaemons:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _tree(pid: int) -> list[psutil.Process]:
    """The live descendants of ``pid`` (a snapshot, taken before we signal it)."""
    try:
        children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
        return children
    except psutil.Error:
        return []
