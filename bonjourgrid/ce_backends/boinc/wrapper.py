"""How a plain bjgrid task runs as a BOINC job: the files the client gets, the one it sends back.

The app version has two files, both signed with the app's code-signing key: the wrapper
program (``wrapper_program.py``, the main program) and the app's file bundle (copied into the
slot as ``bjg_app.tar.gz``). Each task has one input file, ``bjg_job`` (its command, env,
declared outputs and timeout, then its inputs tar), named by content so every attempt of a task
shares it. The wrapper writes ``bjg_out``: exit code, run time and error, then a tar.gz of
stdout, stderr and the declared outputs, the same archive the embedded backend returns.
File names carry a content hash: BOINC treats a file name as immutable.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bonjourgrid.ce_backends.boinc import wrapper_program as program
from bonjourgrid.ce_backends.boinc.scheduler import FileRef
from bonjourgrid.ce_backends.boinc.signing import CodeSignKey, md5_hex

JOB_OPEN_NAME = program.JOB_FILE
APP_OPEN_NAME = program.APP_FILE


def wrapper_source() -> bytes:
    """The wrapper program's bytes, exactly as the client will run them."""
    return Path(program.__file__).read_bytes()


@dataclass(frozen=True)
class StoredFile:
    """A file the project serves: its reference (for the scheduler reply) and its content."""

    ref: FileRef
    data: bytes


def _short(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def app_files(key: CodeSignKey, bundle: bytes) -> tuple[tuple[StoredFile, str | None], ...]:
    """The signed app-version files: (wrapper, None = main program), (bundle, open name)."""
    exe = wrapper_source()
    return (
        (signed_file(key, f"bjg_wrapper_{_short(exe)}.py", exe, executable=True), None),
        (signed_file(key, f"bjg_app_{_short(bundle)}.tar.gz", bundle), APP_OPEN_NAME),
    )


def signed_file(
    key: CodeSignKey, name: str, data: bytes, *, executable: bool = False
) -> StoredFile:
    md5 = md5_hex(data)
    ref = FileRef(name, len(data), md5, signature=key.sign_md5(md5), executable=executable)
    return StoredFile(ref, data)


def job_file(
    *,
    app: str,
    task: str,
    command: str | tuple[str, ...] | list[str],
    env: dict[str, str],
    outputs: tuple[str, ...],
    timeout: float | None,
    inputs: bytes,
    max_output_bytes: int | None = None,
) -> StoredFile:
    """A task's ``bjg_job`` input file (unsigned: only app-version files need a signature).
    ``max_output_bytes`` lowers the wrapper's cap on what the task sends back."""
    header: dict[str, Any] = {
        "app": app,
        "task": task,
        "command": command if isinstance(command, str) else list(command),
        "env": env,
        "outputs": list(outputs),
        "timeout": timeout,
    }
    if max_output_bytes is not None:
        header["max_output_bytes"] = max_output_bytes
    data = program.frame(program.JOB_MAGIC, header, inputs)
    return StoredFile(FileRef(f"bjg_job_{_short(data)}", len(data), md5_hex(data)), data)


@dataclass(frozen=True)
class Outcome:
    """What the wrapper reported for one attempt."""

    exit_code: int | None
    seconds: float
    error: str
    outputs: bytes
    """tar.gz of stdout, stderr and the declared outputs (the embedded backend's layout)."""
    stdout: bytes
    stderr: bytes


class OutputError(ValueError):
    """An uploaded file that is not a wrapper's output."""


def read_output(data: bytes) -> Outcome:
    """Decode the ``bjg_out`` file a client uploaded."""
    import io
    import tarfile

    try:
        header, blob = program.split_framed(data, program.OUT_MAGIC)
        logs: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            for name in logs:
                try:
                    member = tar.getmember(name)
                except KeyError:
                    continue
                f = tar.extractfile(member)
                logs[name] = f.read() if f is not None else b""
        exit_code = header.get("exit_code")
        return Outcome(
            exit_code=None if exit_code is None else int(exit_code),
            seconds=float(header.get("seconds") or 0.0),
            error=str(header.get("error") or ""),
            outputs=blob,
            stdout=logs["stdout"],
            stderr=logs["stderr"],
        )
    except (ValueError, KeyError, OSError, tarfile.TarError, json.JSONDecodeError) as e:
        raise OutputError(f"unreadable wrapper output: {e}") from None


__all__ = [
    "APP_OPEN_NAME",
    "JOB_OPEN_NAME",
    "Outcome",
    "OutputError",
    "StoredFile",
    "app_files",
    "job_file",
    "read_output",
    "signed_file",
    "wrapper_source",
]
