"""Start and stop a real ``boinc`` client process by hand, in a data directory of its own.

bonjourgrid never uses the system's boinc service (``scripts/setup-boinc`` leaves it stopped):
a volunteer's worker side, the tests and the benchmarks each run ``boinc --dir DIR`` with a GUI
RPC port and password of their own, and stop it by the PID they started. The data directory
gets settings that suit a grid volunteer: compute whenever the grid asked it to (no "suspend
while the user is active" or "CPU busy" checks: bjgrid's owner policy decides that, through
GUI RPC, see worker.py; a suspended task stays in memory, stopped, so it goes on where it
was), a tiny work
buffer (one task per CPU, no hoarding), no GPU probing, no project-list fetching, a network
check URL on the LAN (the client never reaches out to boinc.berkeley.edu), and
``fetch_on_update``: an update asked through GUI RPC also asks for work even when another
attached project ranks higher in BOINC's fair share (without it a client that also serves its
owner's projects answers every nudge with "not highest priority project").
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from bonjourgrid.ce_backends.boinc.executable import boinc_executable
from bonjourgrid.ce_backends.boinc.guirpc import DEFAULT_PORT, GuiRpcClient, GuiRpcError

START_TIMEOUT = 30.0
"""Seconds for a fresh client to answer GUI RPC (it reads its state and probes the host)."""
STOP_TIMEOUT = 10.0

Launcher = Callable[..., "subprocess.Popen[Any]"]

_CC_CONFIG = """<cc_config>
  <log_flags>
    <sched_ops>1</sched_ops><task>1</task><file_xfer>1</file_xfer>
  </log_flags>
  <options>
    <no_info_fetch>1</no_info_fetch>
    <no_gpus>1</no_gpus>
    <allow_multiple_clients>1</allow_multiple_clients>
    <fetch_on_update>1</fetch_on_update>
{ncpus}  </options>
</cc_config>
"""

_PREFS = """<global_preferences>
  <run_on_batteries>1</run_on_batteries>
  <run_if_user_active>1</run_if_user_active>
  <leave_apps_in_memory>1</leave_apps_in_memory>
  <run_gpu_if_user_active>0</run_gpu_if_user_active>
  <suspend_cpu_usage>0</suspend_cpu_usage>
  <idle_time_to_run>0</idle_time_to_run>
  <max_ncpus_pct>100</max_ncpus_pct>
  <cpu_usage_limit>100</cpu_usage_limit>
  <work_buf_min_days>0</work_buf_min_days>
  <work_buf_additional_days>0.001</work_buf_additional_days>
  <ram_max_used_busy_pct>90</ram_max_used_busy_pct>
  <ram_max_used_idle_pct>90</ram_max_used_idle_pct>
  <disk_max_used_pct>90</disk_max_used_pct>
  <disk_min_free_gb>0.1</disk_min_free_gb>
</global_preferences>
"""


def prepare_data_dir(
    data_dir: Path, *, password: str, ncpus: int | None = None, network_test_url: str = ""
) -> None:
    """Write the client's settings files into ``data_dir`` (created if needed)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "gui_rpc_auth.cfg").write_text(password + "\n")
    (data_dir / "gui_rpc_auth.cfg").chmod(0o600)
    ncpus_line = f"    <ncpus>{ncpus}</ncpus>\n" if ncpus else ""
    (data_dir / "cc_config.xml").write_text(_CC_CONFIG.format(ncpus=ncpus_line))
    (data_dir / "global_prefs_override.xml").write_text(_PREFS)
    if network_test_url:
        (data_dir / "nvc_config.xml").write_text(
            f"<nvc_config><network_test_url>{network_test_url}</network_test_url></nvc_config>\n"
        )


class BoincClient:
    """One ``boinc`` process we started; ``rpc`` talks to it."""

    def __init__(
        self,
        data_dir: Path,
        *,
        gui_rpc_port: int = DEFAULT_PORT,
        password: str | None = None,
        ncpus: int | None = None,
        network_test_url: str = "",
        launcher: Launcher = subprocess.Popen,
        socket_factory: Callable[[], Any] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        """``launcher`` is ``subprocess.Popen`` or alike (a test bed host's ``popen`` runs it
        in that host); ``socket_factory`` makes GUI RPC sockets where the client can be
        reached (the same host)."""
        self.data_dir = data_dir
        self.port = gui_rpc_port
        self.password = password or secrets.token_hex(12)
        self.ncpus = ncpus
        self.network_test_url = network_test_url
        self._launcher = launcher
        self._socket_factory = socket_factory
        self._extra = tuple(extra_args)
        self.proc: subprocess.Popen[Any] | None = None
        self._log: IO[bytes] | None = None
        self.rpc = GuiRpcClient(
            "127.0.0.1", self.port, password=self.password, socket_factory=socket_factory
        )

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.data_dir / "client.log"

    def start(self, timeout: float = START_TIMEOUT) -> BoincClient:
        """Start the client and wait until its GUI RPC answers; raise if it does not."""
        exe = boinc_executable()
        if exe is None:
            raise RuntimeError("boinc-client is not installed (run scripts/setup-boinc)")
        prepare_data_dir(
            self.data_dir,
            password=self.password,
            ncpus=self.ncpus,
            network_test_url=self.network_test_url,
        )
        argv = [
            exe, "--dir", str(self.data_dir), "--gui_rpc_port", str(self.port),
            "--no_gpus", "--skip_cpu_benchmarks", "--no_info_fetch", "--allow_multiple_clients",
            *self._extra,
        ]  # fmt: skip
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = self._launcher(argv, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self._close_log()
                raise RuntimeError(f"boinc exited at start ({self.proc.returncode}); see "
                                   f"{self.log_path}")  # fmt: skip
            try:
                self.rpc.connect()
                self.rpc.projects()
                return self
            except GuiRpcError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"boinc did not answer GUI RPC within {timeout:g} s"
                    ) from None
                time.sleep(0.1)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Ask the client to quit, then SIGTERM/SIGKILL our PID. Its exit code (None if never
        started). Idempotent."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(GuiRpcError):
                self.rpc.quit()
            try:
                proc.wait(timeout / 2)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout / 2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.rpc.close()
        self._close_log()
        return proc.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> BoincClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- conveniences over GUI RPC ------------------------------------------------------------

    def attach(self, url: str, authenticator: str, name: str = "") -> None:
        self.rpc.project_attach(url, authenticator, name)

    def detach(self, url: str) -> None:
        self.rpc.project_detach(url)

    def update(self, url: str) -> None:
        self.rpc.project_update(url)

    def project_urls(self) -> list[str]:
        return [p.master_url for p in self.rpc.projects()]

    def nudge(self, url: str, *, work_waiting: bool = False) -> bool:
        """Ask for a scheduler RPC to ``url`` now if the client is sitting on something.

        That is: results of the project ready to report (the client reports lazily, and
        defers a project for minutes after a task's "unrecoverable error", e.g. a refused
        signature), or work waiting on the project while the client defers it. GUI RPC
        ``project_update`` clears both the deferral and the work-fetch back-off. Returns
        whether it asked.
        """
        project = next((p for p in self.rpc.projects() if p.master_url == url), None)
        if project is None or project.scheduler_rpc_in_progress:
            return False
        deferred = project.min_rpc_time > time.time()
        ready = any(r.ready_to_report for r in self.rpc.results() if r.project_url == url)
        if ready or (work_waiting and deferred):
            self.rpc.project_update(url)
            return True
        return False


__all__ = ["BoincClient", "boinc_executable", "prepare_data_dir"]
