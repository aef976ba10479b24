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

The task is hostile until proven otherwise (docs/security.md), as in the embedded sandbox:
its ``stdout``/``stderr`` are unnamed files the wrapper opened before it started (nothing the
task does to the slot can reach them); the wrapper is a child subreaper, so every process the
task leaves behind (``setsid``, double forks) becomes the wrapper's child and is killed
before anything is collected; outputs are read through the work folder's descriptor, each
step ``O_NOFOLLOW``, regular files with one name only, within a size cap; what is unpacked
(the app's files, the inputs) is capped too.
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
import tempfile
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
_PR_SET_CHILD_SUBREAPER = 36
MAX_OUTPUT_BYTES = 64 * 1024 * 1024
"""Cap on everything a task sends back (stdout, stderr, declared outputs), as the embedded
sandbox's ``max_output_mb``; the job may lower it (``max_output_bytes``)."""
MAX_OUTPUT_FILES = 10_000
MAX_UNPACK_BYTES = 1024 * 1024 * 1024
"""Cap on the expanded size of the app's files and of the inputs (a decompression bomb)."""
MAX_UNPACK_MEMBERS = 100_000
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
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
    """Unpack a tar.gz of regular files and folders into ``dest``; refuse anything else,
    and anything that expands beyond MAX_UNPACK_BYTES or MAX_UNPACK_MEMBERS."""
    if not blob:
        return
    total = members = 0
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for member in tar:
            members += 1
            if members > MAX_UNPACK_MEMBERS:
                raise ValueError(f"archive has more than {MAX_UNPACK_MEMBERS} entries")
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
                total += member.size
                if total > MAX_UNPACK_BYTES:
                    raise ValueError(f"archive expands beyond {MAX_UNPACK_BYTES} bytes")
                os.makedirs(os.path.dirname(target), exist_ok=True)
                src = tar.extractfile(member)
                with open(target, "wb") as f:
                    f.write(src.read(member.size) if src is not None else b"")
                os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)
            else:
                raise ValueError(f"not a regular file or folder in archive: {member.name!r}")


class _Budget:
    """What a task may still send back: bytes and files."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.files = MAX_OUTPUT_FILES

    def take(self, nbytes: int) -> None:
        self.nbytes -= nbytes
        self.files -= 1
        if self.nbytes < 0:
            raise ValueError("outputs exceed the output size cap")
        if self.files < 0:
            raise ValueError(f"more than {MAX_OUTPUT_FILES} output files")


def _collect(root_fd: int, rel: str, entries: dict[str, bytes | None], budget: _Budget) -> None:
    """Read declared output ``rel`` (a file or a folder) relative to the work folder's
    descriptor, never following a link; FileNotFoundError when it is not there."""
    if not _safe_name(rel):
        raise ValueError(f"{rel!r} is not a safe relative path")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    fds: list[int] = []
    try:
        at = root_fd
        for part in parts[:-1]:
            at = _open_at(part, _OPEN_DIR, at, rel)
            fds.append(at)
        fd = _open_at(parts[-1], _OPEN_FILE, at, rel)
        fds.append(fd)
        _read_entry(fd, "/".join(parts), entries, budget)
    finally:
        for fd in fds:
            os.close(fd)


def _open_at(name: str, flags: int, dir_fd: int, rel: str) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as e:  # ELOOP (a link), ENOTDIR, EACCES, ...
        raise ValueError(f"{rel}: {e.strerror}") from None


def _read_entry(fd: int, rel: str, entries: dict[str, bytes | None], budget: _Budget) -> None:
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        budget.take(0)
        entries[rel] = None
        for child in sorted(os.listdir(fd)):
            cfd = _open_at(child, _OPEN_FILE, fd, rel + "/" + child)
            try:
                _read_entry(cfd, rel + "/" + child, entries, budget)
            finally:
                os.close(cfd)
    elif stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
        budget.take(st.st_size)
        entries[rel] = _read_fd(fd, st.st_size)
    else:
        raise ValueError(f"{rel} is not a regular file or folder with a single name")


def _read_fd(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def pack(entries: dict[str, bytes | None]) -> bytes:
    """A deterministic tar.gz of {archive name: file content, or None for a folder}."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            data = entries[name]
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                continue
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _children_of(pid: int) -> list[int]:
    """Every process whose ancestry leads to ``pid`` (from /proc; gone ones skipped)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat_line = f.read()
        except OSError:
            continue
        fields = stat_line[stat_line.rfind(b")") + 2 :].split()
        parent[int(entry)] = int(fields[1])
    out = []
    for p in parent:
        q, seen = p, 0
        while q in parent and q != pid and seen < 1024:
            q, seen = parent[q], seen + 1
        if q == pid and p != pid:
            out.append(p)
    return out


def _kill_everything() -> None:
    """Kill and reap every process the task left behind: the wrapper is a child subreaper,
    so processes that left the task's session (setsid, double forks) are its children too."""
    _kill_group()
    for _ in range(50):
        left = _children_of(os.getpid())
        for p in left:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        if not left:
            return
        time.sleep(0.02)


def _die_with_parent() -> None:  # in the child, between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _become_subreaper() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1)


def _kill_group() -> None:
    if _child is not None:
        with contextlib.suppress(OSError):
            os.killpg(_child.pid, signal.SIGKILL)


def _on_signal(signum: int, frame: object) -> None:
    # The client aborts or quits: take every process of the task along, no finish file.
    _kill_everything()
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
            _kill_everything()  # a stopped group too: SIGKILL needs no SIGCONT
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
    # Unnamed files: nothing the task does to the slot or its work folder can reach them.
    # They live as long as this process (which ends right after writing bjg_out).
    logs = {name: tempfile.TemporaryFile(dir=slot) for name in ("stdout", "stderr")}  # noqa: SIM115
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
        try:
            _child = subprocess.Popen(
                argv, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=logs["stdout"],
                stderr=logs["stderr"], start_new_session=True, preexec_fn=_die_with_parent,
            )  # fmt: skip
        except OSError as e:
            error = f"cannot start {argv[0]!r}: {e.strerror}"
        else:
            try:
                exit_code = _child.wait(job.get("timeout"))
            except subprocess.TimeoutExpired:
                error = f"timed out after {job['timeout']:g} s"
                exit_code = None
        _kill_everything()  # whatever the task left behind goes before anything is read
        seconds = time.monotonic() - started
        if exit_code is not None and exit_code < 0:
            error = f"killed by signal {-exit_code}"
    budget = _Budget(int(job.get("max_output_bytes") or MAX_OUTPUT_BYTES))
    entries: dict[str, bytes | None] = {}
    if exit_code == 0:
        root_fd = os.open(work, _OPEN_DIR)
        try:
            for rel in job.get("outputs") or ():
                try:
                    _collect(root_fd, rel, entries, budget)
                except FileNotFoundError:
                    error = error or f"declared output {rel!r} was not produced"
                except ValueError as e:
                    error = error or f"output refused: {e}"
        finally:
            os.close(root_fd)
        if error:
            entries = {}
    texts: dict[str, bytes] = {}
    for name, log in logs.items():
        size = os.fstat(log.fileno()).st_size
        keep = max(0, min(size, budget.nbytes))
        log.seek(max(0, size - keep))
        texts[name] = log.read(keep)
        budget.nbytes -= keep
        if keep < size:
            error = error or f"{name} exceeds the output size cap; its last {keep} bytes kept"
    if error:
        texts["stderr"] += f"\n[bjgrid] {error}\n".encode()
    entries.update(texts)
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
    _become_subreaper()
    return run(os.getcwd(), attempt)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
