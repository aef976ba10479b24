"""The HTCondor CE, volunteer side: run one startd in the pool of the app we serve.

::

    coordinator                                   this volunteer
    CondorJoin(ce_id, collector, token) ────────► write the token, execute config,
                                                   condor_master -> startd
                                        ◄──────── CondorJoined(ok, machine)
    (HTCondor's own claims, file transfer and jobs between the schedd and the startd)
    Release / AppEnded ─────────────────────────► close(): stop the startd, remove files

The owner comes first, by HTCondor's own means (config.owner_policy): ``suspend``,
``resume`` and ``give_back`` write ``busy``/``ok``/``gone`` to the owner file; the startd's
cron job publishes it as the machine attribute ``BjgOwner`` and the startd's policy (every
POLLING_INTERVAL, 1 s) suspends the job, continues it, or evicts it to the schedd's queue,
from which the negotiator places it on another machine. ``running`` reads what the startd's
starters run (their job ad's ``BjgridTask``).

Tasks never come as RunTask here: HTCondor moves them. A volunteer advertises ``condor``
among its backends only when :func:`usable` says daemons can run on it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from bonjourgrid.ce_backends.base import WorkerBackend
from bonjourgrid.ce_backends.condor import config, security
from bonjourgrid.ce_backends.condor.coordinator import machine_name
from bonjourgrid.ce_backends.condor.daemons import CondorDaemons, Spawn
from bonjourgrid.ce_backends.condor.installation import Installation, find
from bonjourgrid.control.messages import CondorJoin, CondorJoined
from bonjourgrid.safepath import under

if TYPE_CHECKING:
    from bonjourgrid.control.messages import RunTask

log = logging.getLogger(__name__)

EXECUTE_DAEMONS = ("MASTER", "STARTD")
DEFAULT_MEMORY_MB = 1024
OWNER_FILE = "owner"
OWNER_SCRIPT = "bjg-owner.sh"
_JOB_NAME = re.compile(
    r'^BjgridTask\s*=\s*"([A-Za-z0-9][A-Za-z0-9._-]{0,63})\.([0-9]{1,6})"\s*$', re.M
)
"""The job ad's ``BjgridTask = "<task>.<attempt>"`` (jobs.submit_description)."""


def task_of(job_ad: str) -> str | None:
    """``task#attempt`` from a starter's ``.job.ad`` text; None if absent or malformed (the
    file lies in the job's own scratch directory: the job may have rewritten it)."""
    m = _JOB_NAME.search(job_ad)
    return f"{m.group(1)}#{int(m.group(2))}" if m else None


class CondorWorker(WorkerBackend):
    """One app's execute node on this volunteer.

    ``address`` is the volunteer's LAN (link-local) address, ``cpus`` its slots for the app
    (one partitionable slot of that many CPUs), ``root`` a directory of its own, removed by
    :meth:`close`. ``spawn`` runs condor_master (tests pass a virtual-LAN host's ``popen``).
    """

    name = "condor"
    handles = (CondorJoin,)

    def __init__(
        self,
        app: str,
        root: Path,
        *,
        address: str,
        cpus: int,
        memory_mb: int = DEFAULT_MEMORY_MB,
        inst: Installation | None = None,
        spawn: Spawn | None = None,
    ) -> None:
        self.app = app
        self.root = Path(root)
        self.address = address
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.inst = inst
        self._spawn = spawn
        self._daemons: CondorDaemons | None = None
        self._joined: tuple[str, str, int] | None = None
        self._retiring: list[threading.Thread] = []
        self._owner = config.OWNER_OK
        """What the owner policy last said (written again for each new startd)."""
        self._role_dir: Path | None = None

    @property
    def machine(self) -> str:
        return machine_name(self.address)

    async def join(self, msg: CondorJoin) -> CondorJoined:
        """Start (or restart, for a new head) the startd of ``msg``'s pool; never raises."""
        if msg.app != self.app:
            return CondorJoined(msg.app, False, f"this volunteer serves {self.app}", "")
        want = (msg.ce_id, msg.collector_host, msg.collector_port)
        if self._joined == want and self._daemons is not None:
            return CondorJoined(self.app, True, "", self.machine)
        try:
            await asyncio.to_thread(self._start, msg)
        except Exception as e:
            await asyncio.to_thread(self._stop)
            return CondorJoined(self.app, False, f"{type(e).__name__}: {e}", "")
        self._joined = want
        return CondorJoined(self.app, True, "", self.machine)

    def _start(self, msg: CondorJoin) -> None:
        self._retire()  # a new head (coordinator failover): leave the old pool
        inst = self.inst = self.inst or find()
        if inst is None:
            raise RuntimeError("no usable HTCondor on this volunteer")
        role_dir = under(self.root, f"startd-{msg.ce_id}")
        token_dir = role_dir / "tokens"
        security.install_token(token_dir, "ce", msg.token)
        role_dir.mkdir(parents=True, exist_ok=True)
        script = role_dir / OWNER_SCRIPT
        script.write_text(config.OWNER_SCRIPT)
        script.chmod(0o755)
        self._role_dir = role_dir
        self._write_owner()
        text = config.execute_config(
            config.CeNames(msg.ce_id),
            address=self.address,
            head_address=msg.collector_host,
            head_port=msg.collector_port,
            local_dir=role_dir / "local",
            token_dir=token_dir,
            cpus=self.cpus,
            memory_mb=self.memory_mb,
            owner_file=role_dir / OWNER_FILE,
            owner_script=script,
        )
        self._daemons = CondorDaemons(
            inst, role_dir, text, daemons=EXECUTE_DAEMONS, spawn=self._spawn
        )
        self._daemons.start()
        self._daemons.wait_ready()

    def _retire(self) -> None:
        """Stop the current startd in the background: the old pool's head is gone, and a
        graceful stop takes ~1.3 s, during which the volunteer would answer nothing."""
        daemons, self._daemons, self._joined = self._daemons, None, None
        self._retiring = [t for t in self._retiring if t.is_alive()]
        if daemons is not None:
            t = threading.Thread(target=daemons.stop, name="condor startd stop", daemon=True)
            t.start()
            self._retiring.append(t)

    def _stop(self) -> None:
        """Stop every startd of this worker, the retiring ones included, and wait for them."""
        daemons, self._daemons, self._joined = self._daemons, None, None
        if daemons is not None:
            daemons.stop()
        for t in self._retiring:
            t.join()
        self._retiring = []

    # --- the owner policy ------------------------------------------------------------------

    def _write_owner(self) -> None:
        role_dir = self._role_dir
        if role_dir is None:
            return
        tmp = role_dir / f".{OWNER_FILE}.tmp"
        try:
            tmp.write_text(self._owner + "\n")
            tmp.chmod(0o644)
            os.replace(tmp, role_dir / OWNER_FILE)  # the cron job never reads half a word
        except OSError as e:  # the startd is being torn down
            log.debug("app %s: owner file: %s", self.app, e)

    def suspend(self) -> None:
        """The owner is back: the startd suspends the job at its next policy evaluation."""
        self._owner = config.OWNER_BUSY
        self._write_owner()

    def resume(self) -> None:
        """The owner left: the startd continues the job (and accepts new ones)."""
        self._owner = config.OWNER_OK
        self._write_owner()

    async def give_back(self, reason: str) -> list[str] | None:
        """Past the maximum suspension: the startd evicts its job back to the schedd's queue
        (PREEMPT), which places it on another machine; the coordinator is not asked."""
        given = self.running()
        self._owner = config.OWNER_GONE
        self._write_owner()
        return given

    def running(self) -> list[str]:
        """``task#attempt`` of every job a starter of our startd runs now."""
        role_dir = self._role_dir
        if role_dir is None or self._daemons is None:
            return []
        names: list[str] = []
        for ad in sorted((role_dir / "local" / "execute").glob("dir_*/.job.ad")):
            pid = ad.parent.name.removeprefix("dir_")
            if not pid.isdigit() or not psutil.pid_exists(int(pid)):
                continue  # a starter's directory outliving it for a moment
            try:
                text = ad.read_text(errors="replace")[: 1 << 20]
            except OSError:
                continue
            name = task_of(text)
            if name is not None and name not in names:
                names.append(name)
        return names[: max(1, self.cpus)]

    # --- WorkerBackend ---------------------------------------------------------------------

    async def handle(self, msg: object) -> object | None:
        assert isinstance(msg, CondorJoin)
        return await self.join(msg)

    async def stage(self, bundle: bytes, sha256: str) -> None:
        """Nothing to stage: HTCondor transfers each job's files."""

    def start(self, msg: RunTask) -> None:
        raise RuntimeError("a condor CE runs its tasks through HTCondor, not RunTask")

    async def cancel(self, task: str, attempt: int) -> None:
        """Nothing to do: the coordinator removes the job from its schedd."""

    async def close(self) -> None:
        """Stop the startd (and any job it runs) and remove every file."""
        await asyncio.to_thread(self._stop)
        await asyncio.to_thread(shutil.rmtree, self.root, True)


__all__ = ["CondorWorker"]
