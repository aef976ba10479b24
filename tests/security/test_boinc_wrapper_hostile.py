"""Hostile tasks against bjgrid's BOINC wrapper (the worker side of a BOINC computing element).

The wrapper runs for real in a slot-like folder, as boinc-client runs it, as root (so a link it
followed would reach a root-only canary). Each attack must fail safe: the canary's content is
in no output, the canary keeps content, mtime and inode, whatever the task left behind is
dead when the wrapper returns, and the wrapper never blocks.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bonjourgrid.app.bundle import unpack_files
from bonjourgrid.ce_backends.boinc.wrapper import Outcome, job_file, read_output, wrapper_source

SECRET = "boinc-account-canary-77d1"


@pytest.fixture
def canary() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="bjgrid-boinc-canary-", dir="/var/tmp"))
    key = d / "account_lab.xml"
    key.write_text(SECRET)
    key.chmod(0o600)
    before = (key.read_bytes(), os.stat(key).st_mtime_ns, os.stat(key).st_ino)
    yield key
    assert (key.read_bytes(), os.stat(key).st_mtime_ns, os.stat(key).st_ino) == before
    shutil.rmtree(d, ignore_errors=True)


def run_slot(
    tmp_path: Path,
    command: str,
    *,
    outputs: tuple[str, ...] = (),
    inputs: bytes = b"",
    max_output_bytes: int | None = None,
    timeout: float = 60,
) -> Outcome:
    slot = tmp_path / "slot"
    slot.mkdir()
    exe = slot / "bjg_wrapper.py"
    exe.write_bytes(wrapper_source())
    exe.chmod(0o755)
    job = job_file(
        app="app1", task="t1", command=command, env={}, outputs=outputs, timeout=None,
        inputs=inputs, max_output_bytes=max_output_bytes,
    )  # fmt: skip
    (slot / "bjg_job").write_bytes(job.data)
    proc = subprocess.run(
        [str(exe), "--attempt", "1"], cwd=slot, capture_output=True, timeout=timeout,
        env={"PATH": os.environ["PATH"]},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    return read_output((slot / "bjg_out").read_bytes())


def assert_no_canary(outcome: Outcome, tmp_path: Path) -> None:
    dest = tmp_path / "unpacked"
    dest.mkdir(exist_ok=True)
    for name in unpack_files(outcome.outputs, dest):
        p = dest / name
        if p.is_file():
            assert SECRET.encode() not in p.read_bytes(), f"canary leaked in {name}"


def marked(marker: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        if marker in " ".join(p.info["cmdline"] or ()):
            out.append(p)
    return out


def test_an_escaped_child_swapping_outputs_and_logs_for_links_gets_no_canary_and_dies(
    tmp_path: Path, canary: Path
) -> None:
    marker = f"bjg-swapper-{os.getpid()}"
    swapper = textwrap.dedent(
        f"""
        import os, sys, time
        sys.argv[0] = {marker!r}
        end = time.time() + 30
        while time.time() < end:
            for name in ("out.txt", "../bjg_stdout", "../bjg_stderr", "res/inner"):
                try:
                    tmp = name + ".x"
                    os.symlink({str(canary)!r}, tmp)
                    os.replace(tmp, name)
                except OSError:
                    pass
        """
    )
    (tmp_path / "swapper.py").write_text(swapper)
    cmd = (
        "mkdir -p res; echo ok > out.txt; echo in > res/inner; "
        f"setsid sh -c '(python3 {tmp_path}/swapper.py {marker} &) ; true' ; sleep 0.5"
    )
    started = time.monotonic()
    outcome = run_slot(tmp_path, cmd, outputs=("out.txt", "res"))
    assert time.monotonic() - started < 30, "the wrapper waited for the escaped child"
    assert_no_canary(outcome, tmp_path)
    assert SECRET.encode() not in outcome.stdout + outcome.stderr
    time.sleep(0.2)
    assert marked(marker) == [], "the escaped swapper outlived its task"


def test_a_fifo_output_fails_the_task_and_never_blocks(tmp_path: Path) -> None:
    outcome = run_slot(tmp_path, "mkfifo out.txt", outputs=("out.txt",), timeout=20)
    assert outcome.exit_code == 0 and outcome.error.startswith("output refused")


def test_a_hard_link_to_a_readable_file_is_not_collected(tmp_path: Path, canary: Path) -> None:
    outcome = run_slot(tmp_path, f"ln {canary} out.txt", outputs=("out.txt",))
    assert outcome.error.startswith("output refused")
    assert_no_canary(outcome, tmp_path)


def test_a_link_inside_an_output_folder_is_refused(tmp_path: Path, canary: Path) -> None:
    outcome = run_slot(tmp_path, f"mkdir res; ln -s {canary} res/k", outputs=("res",))
    assert outcome.error.startswith("output refused")
    assert_no_canary(outcome, tmp_path)


def test_outputs_over_the_cap_fail_cleanly_with_a_small_result(tmp_path: Path) -> None:
    outcome = run_slot(
        tmp_path, "head -c 3000000 /dev/zero > big; head -c 3000000 /dev/zero",
        outputs=("big",), max_output_bytes=1_000_000,
    )  # fmt: skip
    assert "exceed" in outcome.error
    assert len(outcome.outputs) < 200_000


def test_a_decompression_bomb_as_inputs_fails_staging(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("bomb")
        info.size = 1100 * 1024 * 1024  # past the 1 GiB cap
        tar.addfile(info, _Zeros(info.size))
    blob = gzip.compress(raw.getvalue(), compresslevel=1)
    outcome = run_slot(tmp_path, "true", inputs=blob)
    assert outcome.error.startswith("staging failed") and "expands beyond" in outcome.error
    assert not (tmp_path / "slot" / "work" / "bomb").exists()


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n

    def readable(self) -> bool:
        return True
