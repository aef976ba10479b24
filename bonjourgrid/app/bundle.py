"""Deterministic, safe tar.gz bundles: the app's files, a task's inputs and outputs.

Packing dereferences symbolic links (a link must resolve inside the packed folder) and stores
only regular files and folders, sorted, with zeroed times and owners and modes reduced to
0644/0755, so the same files always give the same bytes (and the same sha256). Unpacking
accepts only what packing produces: relative names without `..`, regular files and folders;
links, devices and FIFOs are refused, and nothing is ever written outside the destination.
Unpacking is capped (``max_bytes`` of file content, ``max_members`` entries; the decompressed
stream itself is bounded too), so a decompression bomb fails with a clear error.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import stat
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from bonjourgrid.app.spec import AppSpec

_CHUNK = 1 << 16
_MB = 1024 * 1024
MAX_UNPACK_BYTES = 1024 * _MB
"""Default cap on the expanded size (file contents) of anything unpacked."""
MAX_UNPACK_MEMBERS = 100_000
"""Default cap on the number of entries of anything unpacked."""
_HEADER_ALLOWANCE = 1536
"""Decompressed bytes allowed per entry beyond its content (tar and PAX headers, padding)."""


class BundleError(Exception):
    """A bundle cannot be packed or unpacked safely; `path` names the culprit."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_relpath(rel: str) -> str | None:
    """Why `rel` is not a safe relative path (None if it is): empty, absolute or with `..`."""
    if not rel or rel.strip() == "":
        return "empty path"
    if "\x00" in rel:
        return "path contains a NUL character"
    if rel.startswith("/"):
        return "absolute path"
    if ".." in rel.split("/"):
        return "path contains '..'"
    if posixpath.normpath(rel) == ".":
        return "path names the folder itself"
    return None


def _inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip("/") + "/")


def _collect(
    root: Path, relpaths: Sequence[str], *, missing_ok: bool, label: str = "the packed folder"
) -> dict[str, Path | None]:
    """Archive name -> source file (None for a folder), following links that stay inside."""
    real_root = os.path.realpath(root)
    entries: dict[str, Path | None] = {}

    def visit(arc: str, path: Path, chain: frozenset[str]) -> None:
        real = os.path.realpath(path)
        if not _inside(real, real_root):
            raise BundleError(arc, f"symbolic link resolves outside {label}")
        try:
            st = os.stat(real)
        except FileNotFoundError:
            raise BundleError(arc, "dangling symbolic link") from None
        if stat.S_ISREG(st.st_mode):
            entries[arc] = path
        elif stat.S_ISDIR(st.st_mode):
            if real in chain:
                raise BundleError(arc, "symbolic link loop")
            entries[arc] = None
            for child in sorted(os.listdir(path)):
                visit(f"{arc}/{child}", path / child, chain | {real})
        else:
            raise BundleError(arc, "not a regular file or folder")

    for rel in relpaths:
        why = check_relpath(rel)
        if why is not None:
            raise BundleError(rel, why)
        arc = posixpath.normpath(rel)
        path = root / arc
        if not os.path.lexists(path):
            if missing_ok:
                continue
            raise BundleError(arc, "no such file or folder")
        visit(arc, path, frozenset())
    return entries


def check_tree(root: Path, relpaths: Sequence[str], *, label: str = "the packed folder") -> None:
    """Raise BundleError if `pack_files(root, relpaths)` would refuse (without reading data)."""
    _collect(root, relpaths, missing_ok=False, label=label)


def pack_files(root: Path, relpaths: Sequence[str], *, missing_ok: bool = False) -> bytes:
    """A deterministic tar.gz of `relpaths` (files or folders, recursive) under `root`.

    Raises BundleError for a missing path (unless `missing_ok`), a path or link resolving
    outside `root`, or anything that is not a regular file or folder.
    """
    entries = _collect(Path(root), relpaths, missing_ok=missing_ok)
    opened: dict[str, FileData | None] = {}
    try:
        for arc, src in entries.items():
            if src is None:
                opened[arc] = None
                continue
            fh = open(src, "rb")  # noqa: SIM115 - closed below
            st = os.fstat(fh.fileno())
            opened[arc] = (st.st_mode, st.st_size, fh)
        return pack_entries(opened)
    finally:
        for data in opened.values():
            if data is not None:
                data[2].close()


FileData = tuple[int, int, IO[bytes]]
"""(st_mode, size, readable positioned at the content's start) of one file to pack."""


def pack_entries(entries: dict[str, FileData | None]) -> bytes:
    """A deterministic tar.gz of files given as data (None: a folder), by archive name.

    Only the execute bit of ``st_mode`` is kept (0755/0644); ``size`` bytes are read.
    """
    buf = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for arc in sorted(entries):
            data = entries[arc]
            info = tarfile.TarInfo(arc)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                continue
            mode, size, fh = data
            info.size = size
            info.mode = 0o755 if mode & 0o111 else 0o644
            tar.addfile(info, fh)
    return buf.getvalue()


class _CappedStream(io.RawIOBase):
    """The decompressed bytes of a gzip blob, at most ``limit`` of them (BundleError beyond)."""

    def __init__(self, blob: bytes, limit: int, what: str) -> None:
        self._gz = gzip.GzipFile(fileobj=io.BytesIO(blob), mode="rb")
        self._left = limit
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._gz.read(min(len(b), self._left + 1))
        self._left -= len(data)
        if self._left < 0:
            raise BundleError("<bundle>", self._what)
        b[: len(data)] = data
        return len(data)


def unpack_files(
    blob: bytes,
    dest: Path,
    *,
    max_bytes: int = MAX_UNPACK_BYTES,
    max_members: int = MAX_UNPACK_MEMBERS,
) -> list[str]:
    """Extract a bundle into `dest` (created if needed); the regular files written, sorted.

    Raises BundleError for an unreadable archive, an absolute name or one with `..`, a link,
    a device or FIFO, a duplicate name, anything that would land outside `dest`, or an
    archive that expands beyond `max_bytes` of content or `max_members` entries (what was
    written before the error stays: the caller removes `dest`).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    seen: set[str] = set()
    too_big = f"expands beyond {max_bytes // _MB} MB (the unpacking limit)"
    stream_limit = max_bytes + (max_members + 2) * _HEADER_ALLOWANCE
    total = 0
    try:
        stream = io.BufferedReader(_CappedStream(blob, stream_limit, too_big), _CHUNK)
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if len(seen) >= max_members:
                    raise BundleError("<bundle>", f"has more than {max_members} entries")
                total += max(0, member.size) if member.isreg() else 0
                if total > max_bytes:
                    raise BundleError(member.name, too_big)
                name = _member_name(member)
                if name in seen:
                    raise BundleError(name, "duplicate entry")
                seen.add(name)
                target = dest / name
                if member.isdir():
                    _make_dirs(dest, name, name)
                elif member.isreg():
                    _make_dirs(dest, posixpath.dirname(name), name)
                    source = tar.extractfile(member)
                    if source is None:  # pragma: no cover - isreg() members always have data
                        raise BundleError(name, "unreadable entry")
                    _write_file(target, source, 0o755 if member.mode & 0o111 else 0o644, name)
                    written.append(name)
                elif member.issym() or member.islnk():
                    raise BundleError(name, "links are not allowed in a bundle")
                else:
                    raise BundleError(name, "devices and FIFOs are not allowed in a bundle")
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise BundleError("<bundle>", f"not a valid tar.gz bundle ({exc})") from None
    return sorted(written)


def _member_name(member: tarfile.TarInfo) -> str:
    why = check_relpath(member.name)
    if why is not None:
        raise BundleError(member.name, why)
    return posixpath.normpath(member.name)


def _make_dirs(dest: Path, rel: str, name: str) -> None:
    """Create `dest/rel` one component at a time, never passing through a symbolic link."""
    path = dest
    for part in [p for p in rel.split("/") if p not in ("", ".")]:
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            try:
                path.mkdir()
            except OSError as exc:
                raise BundleError(name, f"cannot create folder: {exc.strerror}") from None
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise BundleError(name, f"{part!r} in the destination is not a folder")


def _write_file(path: Path, source: IO[bytes], mode: int, name: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        raise BundleError(name, f"cannot write: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            out.write(chunk)
        os.fchmod(out.fileno(), mode)


def build_bundle(spec: AppSpec, app_dir: Path) -> bytes:
    """The app's files (`spec.files`, relative to `app_dir`) as a deterministic tar.gz."""
    return pack_files(Path(app_dir), spec.files)


def extract_bundle(
    blob: bytes,
    dest: Path,
    *,
    max_bytes: int = MAX_UNPACK_BYTES,
    max_members: int = MAX_UNPACK_MEMBERS,
) -> None:
    """Unpack an app bundle into `dest` safely, within the caps (see `unpack_files`)."""
    unpack_files(blob, dest, max_bytes=max_bytes, max_members=max_members)
