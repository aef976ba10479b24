"""The wrapper program, run for real in a slot-like directory as the client would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bonjourgrid.app.bundle import pack_files, unpack_files
from bonjourgrid.ce_backends.boinc.signing import CodeSignKey, check_file_signature
from bonjourgrid.ce_backends.boinc.wrapper import (
    Outcome,
    OutputError,
    app_files,
    job_file,
    read_output,
    wrapper_source,
)


def _tar(tmp: Path, files: dict[str, str]) -> bytes:
    src = tmp / f"src{len(list(tmp.iterdir()))}"
    src.mkdir()
    for name, text in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    return pack_files(src, sorted(files))


def run_slot(
    tmp_path: Path,
    command: str | tuple[str, ...],
    *,
    outputs: tuple[str, ...] = (),
    inputs: dict[str, str] | None = None,
    app: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    attempt: int = 2,
) -> tuple[Outcome, Path]:
    slot = tmp_path / "slot"
    slot.mkdir()
    exe = slot / "bjg_wrapper.py"
    exe.write_bytes(wrapper_source())
    exe.chmod(0o755)
    blob = _tar(tmp_path, inputs) if inputs else b""
    job = job_file(
        app="app1", task="t1", command=command, env=env or {}, outputs=outputs,
        timeout=timeout, inputs=blob,
    )  # fmt: skip
    (slot / "bjg_job").write_bytes(job.data)
    if app is not None:
        (slot / "bjg_app.tar.gz").write_bytes(_tar(tmp_path, app))
    proc = subprocess.run(
        [str(exe), "--attempt", str(attempt)], cwd=slot, capture_output=True, timeout=60,
        env={"PATH": os.environ["PATH"]},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert (slot / "boinc_finish_called").read_text().strip() == "0"
    return read_output((slot / "bjg_out").read_bytes()), slot


def files_of(outcome: Outcome, tmp_path: Path) -> dict[str, str]:
    dest = tmp_path / "unpacked"
    dest.mkdir()
    names = unpack_files(outcome.outputs, dest)  # the core's own unpacker accepts it
    return {n: (dest / n).read_text() for n in names if (dest / n).is_file()}


def test_runs_the_command_with_its_files_and_packs_declared_outputs(tmp_path: Path) -> None:
    cmd = (
        "cat data/in.txt lib.txt > out.txt; mkdir -p res && echo $GREETING > res/g; "
        "echo attempt=$BJGRID_ATTEMPT task=$BJGRID_TASK; echo oops >&2; pwd > where"
    )
    outcome, slot = run_slot(
        tmp_path, cmd, outputs=("out.txt", "res"), inputs={"data/in.txt": "IN\n"},
        app={"lib.txt": "LIB\n"}, env={"GREETING": "hi there"},
    )  # fmt: skip
    assert outcome.exit_code == 0 and outcome.error == ""
    files = files_of(outcome, tmp_path)
    assert files == {
        "out.txt": "IN\nLIB\n",
        "res/g": "hi there\n",
        "stdout": "attempt=2 task=t1\n",
        "stderr": "oops\n",
    }
    assert outcome.stdout == b"attempt=2 task=t1\n" and outcome.stderr == b"oops\n"
    assert (slot / "work" / "where").read_text().strip() == str(slot / "work")


def test_non_zero_exit_is_carried_back_without_outputs(tmp_path: Path) -> None:
    outcome, _ = run_slot(
        tmp_path, "echo made > out.txt; echo bad >&2; exit 3", outputs=("out.txt",)
    )
    assert outcome.exit_code == 3 and outcome.error == ""
    assert files_of(outcome, tmp_path) == {"stdout": "", "stderr": "bad\n"}


def test_argv_command_runs_without_a_shell(tmp_path: Path) -> None:
    outcome, _ = run_slot(tmp_path, (sys.executable, "-c", "import sys; print(sys.argv[1:])", "$X"))
    assert outcome.exit_code == 0 and outcome.stdout == b"['$X']\n"


@pytest.mark.parametrize(
    ("command", "outputs", "timeout", "exit_code", "error"),
    [
        ("true", ("missing",), None, 0, "declared output 'missing' was not produced"),
        ("ln -s /etc/passwd leak", ("leak",), None, 0, "output refused"),
        ("sleep 30", (), 0.5, None, "timed out after 0.5 s"),
        ("kill -9 $$", (), None, -9, "killed by signal 9"),
        (("/nonexistent/prog",), (), None, None, "cannot start '/nonexistent/prog'"),
    ],
)
def test_failures_are_reported_in_the_output_not_as_a_crash(
    tmp_path: Path,
    command: str | tuple[str, ...],
    outputs: tuple[str, ...],
    timeout: float | None,
    exit_code: int | None,
    error: str,
) -> None:
    outcome, _ = run_slot(tmp_path, command, outputs=outputs, timeout=timeout)
    assert outcome.exit_code == exit_code
    assert outcome.error.startswith(error)
    assert f"[bjgrid] {outcome.error}" in outcome.stderr.decode()
    assert set(files_of(outcome, tmp_path)) == {"stdout", "stderr"}


def test_unsafe_inputs_are_refused(tmp_path: Path) -> None:
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    slot = tmp_path / "slot"
    slot.mkdir()
    job = job_file(app="a", task="t", command="true", env={}, outputs=(), timeout=None,
                   inputs=raw.getvalue())  # fmt: skip
    (slot / "bjg_job").write_bytes(job.data)
    from bonjourgrid.ce_backends.boinc import wrapper_program

    assert wrapper_program.run(str(slot), "1") == 0
    outcome = read_output((slot / "bjg_out").read_bytes())
    assert outcome.error.startswith("staging failed: unsafe path") and outcome.exit_code is None
    assert not (tmp_path / "escape").exists()


def test_app_files_are_signed_and_named_by_content() -> None:
    key = CodeSignKey.generate()
    (exe, main), (bundle, open_name) = app_files(key, b"bundle bytes")
    assert main is None and open_name == "bjg_app.tar.gz"
    assert exe.ref.executable and exe.data == wrapper_source()
    for f in (exe, bundle):
        assert f.ref.signature is not None
        assert check_file_signature(key.public_text, f.data, f.ref.signature)
        assert f.ref.nbytes == len(f.data)
    (_, _), (other, _) = app_files(key, b"other bundle")
    assert other.ref.name != bundle.ref.name


def test_job_files_are_named_by_content() -> None:
    def job(cmd: str) -> str:
        return job_file(app="a", task="t", command=cmd, env={}, outputs=(), timeout=None,
                        inputs=b"").ref.name  # fmt: skip

    assert job("x") == job("x") != job("y")


def test_read_output_refuses_junk() -> None:
    with pytest.raises(OutputError):
        read_output(b"hello")
