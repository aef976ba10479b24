#!/usr/bin/env python3
"""bjgrid's BOINC wrapper: runs one bjgrid task as a BOINC job, inside the client's slot.

This file is the app's executable: the coordinator serves it, signed, and the volunteer's
boinc client runs it with ``cwd`` = its slot directory and ``--attempt N`` as arguments.
Standard library only, Python >= 3.7 (annotations are never evaluated): it runs on any volunteer.

In the slot (copied there by the client, ``<copy_file/>``):
  bjg_job         BJGJOB1 line, one JSON line (task, command, env, outputs, timeout, app),
                  then a tar.gz of the task's inputs (its predecessors' outputs)
  bjg_app.tar.gz  the app's files (may be empty)
Written here:
  work/           the task's private directory (its cwd and HOME)
  bjg_out         BJGOUT1 line, one JSON line (exit_code, seconds, error), then a tar.gz of
                  stdout, stderr and (on exit 0) the declared outputs; the client uploads it
  boinc_finish_called
                  without it the client takes any exit for a crash and restarts the job
Read here: the client's shared memory (boinc_mmap_file, or the System V segment that
init_data.xml names): its first channel carries the client's process-control requests.
``<suspend/>`` and ``<resume/>`` stop and continue the task's process group (the client
suspends a task by asking it, never by a signal); ``<abort/>`` and ``<quit/>`` end it.
The task's own exit code travels in bjg_out; the wrapper itself exits 0 unless it breaks.
"""

from __future__ import annotations

import contextlib
import ctypes
import gzip
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
from typing import Any

JOB_MAGIC = b"BJGJOB1\n"
OUT_MAGIC = b"BJGOUT1\n"
JOB_FILE = "bjg_job"
APP_FILE = "bjg_app.tar.gz"
OUT_FILE = "bjg_out"
FINISH_FILE = "boinc_finish_called"
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_PR_SET_PDEATHSIG = 1
SHM_FILE = "boinc_mmap_file"
CHANNEL_SIZE = 1024
"""BOINC's MSG_CHANNEL_SIZE: byte 0 says "a message is here", the text follows; the first
channel of the shared memory is process_control_request (client -> app)."""
CONTROL_POLL_S = 0.1

_child: subprocess.Popen[bytes] | None = None


def split_framed(data: bytes, magic: bytes) -> tuple[dict[str, Any], bytes]:
    """(header dict, payload bytes) of a ``magic`` + JSON line + payload blob."""
    if not data.startswith(magic):
        raise ValueError("not a bjgrid file")
    line, _, payload = data[len(magic) :].partition(b"\n")
    return json.loads(line.decode("utf-8")), payload


def frame(magic: bytes, header: dict[str, Any], payload: bytes) -> bytes:
    return magic + json.dumps(header, sort_keys=True).encode("utf-8") + b"\n" + payload


def _safe_name(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and ".." not in parts and "\x00" not in name


def extract(blob: bytes, dest: str) -> None:
    """Unpack a tar.gz of regular files and folders into ``dest``; refuse anything else."""
    if not blob:
        return
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for member in tar:
            name = member.name.rstrip("/")
            name = name[2:] if name.startswith("./") else name
            if name in ("", "."):
                continue
            if not _safe_name(name):
                raise ValueError(f"unsafe path in archive: {member.name!r}")
            target = os.path.join(dest, name)
            if member.isdir():
                os.makedirs(target, exist_ok=True)
            elif member.isfile():
                os.makedirs(os.path.dirname(target), exist_ok=True)
                src = tar.extractfile(member)
                with open(target, "wb") as f:
                    f.write(src.read() if src is not None else b"")
                os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)
            else:
                raise ValueError(f"not a regular file or folder in archive: {member.name!r}")


def _inside(path: str, root: str) -> bool:
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    return real == real_root or real.startswith(real_root.rstrip("/") + "/")


def _collect(root: str, rel: str, entries: dict[str, str | None]) -> None:
    path = os.path.join(root, rel)
    if not _inside(path, root):
        raise ValueError(f"{rel} resolves outside the task directory")
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        entries[rel] = None
        for child in sorted(os.listdir(path)):
            _collect(root, rel + "/" + child, entries)
    elif stat.S_ISREG(st.st_mode):
        entries[rel] = path
    else:
        raise ValueError(f"{rel} is not a regular file or folder")


def pack(entries: dict[str, str | None]) -> bytes:
    """A deterministic tar.gz of {archive name: file path or None for a folder}."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            path = entries[name]
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if path is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                continue
            with open(path, "rb") as f:
                data = f.read()
            info.size = len(data)
            info.mode = 0o755 if os.stat(path).st_mode & 0o111 else 0o644
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _die_with_parent() -> None:  # in the child, between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _kill_group() -> None:
    if _child is not None:
        with contextlib.suppress(OSError):
            os.killpg(_child.pid, signal.SIGKILL)


def _on_signal(signum: int, frame: object) -> None:
    # The client aborts or quits: take the task's whole process group along, no finish file.
    _kill_group()
    os._exit(128 + signum)


class _Control:
    """The client's process-control channel (client -> app), in its shared memory: the file
    ``boinc_mmap_file`` (apps declaring API >= 6) or, as for this app version, the System V
    segment whose key init_data.xml gives (``<shm_key>``)."""

    def __init__(self, slot: str) -> None:
        self.path = os.path.join(slot, SHM_FILE)
        self.addr: int | None = None
        if os.path.exists(self.path):
            return
        with open(os.path.join(slot, "init_data.xml"), errors="replace") as f:
            text = f.read()
        start = text.find("<shm_key>")
        if start < 0:
            return
        key = int(text[start + 9 : text.index("</shm_key>", start)].strip())
        libc = ctypes.CDLL(None, use_errno=True)
        libc.shmget.restype = ctypes.c_int
        libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
        libc.shmat.restype = ctypes.c_void_p
        libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        shmid = libc.shmget(key, 0, 0)
        if shmid >= 0:
            addr = libc.shmat(shmid, None, 0)
            if addr not in (None, ctypes.c_void_p(-1).value):
                self.addr = addr

    def take(self) -> bytes:
        """The pending message, if any (b"" when none); taking it frees the channel, which
        the client writes again only once it is free."""
        if self.addr is not None:
            buf = ctypes.string_at(self.addr, CHANNEL_SIZE)
            if buf[0] == 0:
                return b""
            ctypes.memset(self.addr, 0, 1)
            return buf[1:].split(b"\0", 1)[0]
        try:
            with open(self.path, "r+b") as f:
                buf = f.read(CHANNEL_SIZE)
                if not buf or buf[0] == 0:
                    return b""
                f.seek(0)
                f.write(b"\0")
        except OSError:
            return b""
        return buf[1:].split(b"\0", 1)[0]


def _follow_control(slot: str) -> None:
    """Suspend and resume the task's process group when the client asks (its owner came
    back: bjgrid suspended the project, BOINC asks each of its tasks)."""
    try:
        control = _Control(slot)
    except (OSError, ValueError):
        return
    while True:
        time.sleep(CONTROL_POLL_S)
        msg = control.take()
        if b"<abort/>" in msg or b"<quit/>" in msg:
            _kill_group()  # a stopped group too: SIGKILL needs no SIGCONT
            os._exit(128 + signal.SIGTERM)
        sig = (
            signal.SIGSTOP
            if b"<suspend/>" in msg
            else signal.SIGCONT
            if b"<resume/>" in msg
            else None
        )
        if sig is not None and _child is not None:
            with contextlib.suppress(OSError):
                os.killpg(_child.pid, sig)


def run(slot: str, attempt: str) -> int:
    """Run the job found in ``slot``; write bjg_out and the finish file. Returns exit status."""
    global _child
    with open(os.path.join(slot, JOB_FILE), "rb") as f:
        job, inputs = split_framed(f.read(), JOB_MAGIC)
    work = os.path.join(slot, "work")
    if os.path.isdir(work):  # a restarted job starts over
        subprocess.call(["rm", "-rf", work])
    os.makedirs(work)
    logs = {"stdout": os.path.join(slot, "bjg_stdout"), "stderr": os.path.join(slot, "bjg_stderr")}
    error = ""
    exit_code: int | None = None
    seconds = 0.0
    try:
        app_path = os.path.join(slot, APP_FILE)
        if os.path.exists(app_path):
            with open(app_path, "rb") as f:
                extract(f.read(), work)
        extract(inputs, work)
    except Exception as e:
        error = f"staging failed: {e}"
    threading.Thread(target=_follow_control, args=(slot,), daemon=True).start()
    if not error:
        command = job["command"]
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        env = {"PATH": SAFE_PATH, "HOME": work, "LANG": "C.UTF-8", "TMPDIR": work}
        env.update(job.get("env") or {})
        env.update(
            BJGRID_APP=str(job.get("app", "")), BJGRID_TASK=job["task"], BJGRID_ATTEMPT=attempt
        )
        started = time.monotonic()
        with open(logs["stdout"], "wb") as out, open(logs["stderr"], "wb") as err:
            try:
                _child = subprocess.Popen(
                    argv, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    start_new_session=True, preexec_fn=_die_with_parent,
                )  # fmt: skip
            except OSError as e:
                error = f"cannot start {argv[0]!r}: {e.strerror}"
            else:
                try:
                    exit_code = _child.wait(job.get("timeout"))
                except subprocess.TimeoutExpired:
                    error = f"timed out after {job['timeout']:g} s"
                    _kill_group()
                    _child.wait()
                    exit_code = None
                _kill_group()  # whatever the task left behind in its group goes too
        seconds = time.monotonic() - started
        if exit_code is not None and exit_code < 0:
            error = f"killed by signal {-exit_code}"
    entries: dict[str, str | None] = {}
    if exit_code == 0:
        for rel in job.get("outputs") or ():
            try:
                _collect(work, rel, entries)
            except FileNotFoundError:
                error = error or f"declared output {rel!r} was not produced"
            except ValueError as e:
                error = error or f"output refused: {e}"
    for name, path in logs.items():
        if not os.path.exists(path):
            open(path, "wb").close()
        entries[name] = path
    if error:
        with open(logs["stderr"], "a") as f:
            f.write(f"\n[bjgrid] {error}\n")
    header = {"exit_code": exit_code, "seconds": seconds, "error": error}
    with open(os.path.join(slot, OUT_FILE), "wb") as f:
        f.write(frame(OUT_MAGIC, header, pack(entries)))
    with open(os.path.join(slot, FINISH_FILE), "w") as f:
        f.write("0\n")
    return 0


def main(argv: list[str]) -> int:
    attempt = "1"
    if "--attempt" in argv:
        attempt = argv[argv.index("--attempt") + 1]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    return run(os.getcwd(), attempt)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
