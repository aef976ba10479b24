"""Bundles: deterministic bytes, faithful round trip, and refusal of anything escaping."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from bonjourgrid.app import (
    AppSpec,
    BundleError,
    TaskSpec,
    build_bundle,
    extract_bundle,
    pack_files,
    sha256_hex,
    unpack_files,
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "empty").mkdir()
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o750)
    (root / "data" / "a.txt").write_text("a")
    (root / "data" / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    return root


def spec(*files: str) -> AppSpec:
    return AppSpec(name="x", tasks=(TaskSpec(id="t", command="true"),), files=files)


def test_bundle_is_deterministic_across_mtimes_and_order(tree: Path) -> None:
    first = build_bundle(spec("run.sh", "data"), tree)
    os.utime(tree / "data" / "a.txt", (1, 1))
    os.utime(tree / "run.sh", (2_000_000_000, 2_000_000_000))
    again = build_bundle(spec("data", "run.sh"), tree)
    assert first == again
    assert sha256_hex(first) == sha256_hex(again)
    assert len(sha256_hex(first)) == 64


def test_bundle_entries_are_sorted_with_zeroed_metadata(tree: Path) -> None:
    blob = build_bundle(spec("run.sh", "data/"), tree)
    assert gzip.decompress(blob)  # a real gzip stream
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names == ["data", "data/a.txt", "data/empty", "data/sub", "data/sub/b.bin", "run.sh"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    modes = {m.name: m.mode for m in members}
    assert modes["run.sh"] == 0o755 and modes["data/a.txt"] == 0o644 and modes["data"] == 0o755


def test_round_trip_restores_files_folders_and_exec_bit(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    extract_bundle(build_bundle(spec("run.sh", "data"), tree), dest)
    assert (dest / "data" / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 100
    assert (dest / "data" / "empty").is_dir()
    assert os.stat(dest / "run.sh").st_mode & stat.S_IXUSR
    assert not os.stat(dest / "data" / "a.txt").st_mode & stat.S_IXUSR


def test_unpack_reports_regular_files(tree: Path, tmp_path: Path) -> None:
    blob = pack_files(tree, ["data/sub", "run.sh"])
    assert unpack_files(blob, tmp_path / "o") == ["data/sub/b.bin", "run.sh"]


def test_links_inside_are_packed_as_their_content(tree: Path, tmp_path: Path) -> None:
    os.symlink("a.txt", tree / "data" / "alias")
    dest = tmp_path / "o"
    unpack_files(pack_files(tree, ["data"]), dest)
    assert not (dest / "data" / "alias").is_symlink()
    assert (dest / "data" / "alias").read_text() == "a"


def test_pack_refuses_a_link_resolving_outside_root(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", tree / "data" / "leak")
    with pytest.raises(BundleError) as info:
        pack_files(tree, ["data"])
    assert str(info.value) == "data/leak: symbolic link resolves outside the packed folder"


@pytest.mark.parametrize(
    ("rel", "problem"),
    [
        ("../x", "path contains '..'"),
        ("/etc/passwd", "absolute path"),
        ("", "empty path"),
        ("nope", "no such file or folder"),
    ],
)
def test_pack_refuses_bad_paths(tree: Path, rel: str, problem: str) -> None:
    with pytest.raises(BundleError) as info:
        pack_files(tree, [rel])
    assert info.value.problem == problem


def test_pack_missing_ok_skips_missing(tree: Path) -> None:
    blob = pack_files(tree, ["nope", "run.sh"], missing_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        assert tar.getnames() == ["run.sh"]


def test_pack_refuses_fifos(tree: Path) -> None:
    os.mkfifo(tree / "data" / "pipe")
    with pytest.raises(BundleError) as info:
        pack_files(tree, ["data"])
    assert str(info.value) == "data/pipe: not a regular file or folder"


def test_pack_refuses_link_loops(tree: Path) -> None:
    os.symlink("..", tree / "data" / "sub" / "up")
    with pytest.raises(BundleError) as info:
        pack_files(tree, ["data"])
    assert info.value.problem == "symbolic link loop"


def _evil(*members: tarfile.TarInfo, data: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for m in members:
            if m.isreg():
                m.size = len(data)
                tar.addfile(m, io.BytesIO(data))
            else:
                tar.addfile(m)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type = kind
    m.linkname = link
    return m


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([_member("../escape")], "../escape: path contains '..'"),
        ([_member("a/../../escape")], "a/../../escape: path contains '..'"),
        ([_member("/abs")], "/abs: absolute path"),
        ([_member("ln", tarfile.SYMTYPE, "/etc")], "ln: links are not allowed in a bundle"),
        ([_member("ln", tarfile.SYMTYPE, "x")], "ln: links are not allowed in a bundle"),
        ([_member("hl", tarfile.LNKTYPE, "x")], "hl: links are not allowed in a bundle"),
        ([_member("dev", tarfile.CHRTYPE)], "dev: devices and FIFOs are not allowed in a bundle"),
        (
            [_member("fifo", tarfile.FIFOTYPE)],
            "fifo: devices and FIFOs are not allowed in a bundle",
        ),
        ([_member("a"), _member("./a")], "a: duplicate entry"),
    ],
)
def test_unpack_refuses_unsafe_members(
    tmp_path: Path, members: list[tarfile.TarInfo], message: str
) -> None:
    dest = tmp_path / "d" / "dest"
    with pytest.raises(BundleError) as info:
        unpack_files(_evil(*members), dest)
    assert str(info.value) == message
    assert not (tmp_path / "d" / "escape").exists()
    assert not (tmp_path / "escape").exists()


def test_unpack_never_writes_through_an_existing_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "sub")
    os.symlink(outside / "f", dest / "f")
    with pytest.raises(BundleError):
        unpack_files(_evil(_member("sub/x")), dest)
    with pytest.raises(BundleError):
        unpack_files(_evil(_member("f")), dest)
    assert list(outside.iterdir()) == []


def test_unpack_refuses_garbage(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as info:
        unpack_files(b"not a tarball", tmp_path)
    assert info.value.path == "<bundle>"
