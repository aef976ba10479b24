"""Deterministic, safe tar.gz bundles: the app's files, a task's inputs and outputs.

Packing dereferences symbolic links (a link must resolve inside the packed folder) and stores
only regular files and folders, sorted, with zeroed times and owners and modes reduced to
0644/0755, so the same files always give the same bytes (and the same sha256). Unpacking
accepts only what packing produces: relative names without `..`, regular files and folders;
links, devices and FIFOs are refused, and nothing is ever written outside the destination.
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
    buf = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for arc in sorted(entries):
            src = entries[arc]
            info = tarfile.TarInfo(arc)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if src is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                continue
            with open(src, "rb") as fh:
                st = os.fstat(fh.fileno())
                info.size = st.st_size
                info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                tar.addfile(info, fh)
    return buf.getvalue()


def unpack_files(blob: bytes, dest: Path) -> list[str]:
    """Extract a bundle into `dest` (created if needed); the regular files written, sorted.

    Raises BundleError for an unreadable archive, an absolute name or one with `..`, a link,
    a device or FIFO, a duplicate name, or anything that would land outside `dest`.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    seen: set[str] = set()
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            for member in tar:
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


def extract_bundle(blob: bytes, dest: Path) -> None:
    """Unpack an app bundle into `dest` safely (see `unpack_files`)."""
    unpack_files(blob, dest)
