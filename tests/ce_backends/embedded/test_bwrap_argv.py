"""The bubblewrap argv a non-root volunteer runs a task with, the probe and the mode it picks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bonjourgrid.ce_backends.embedded import bwrap
from bonjourgrid.ce_backends.embedded.isolation import TASK_MOUNT

LAYOUT = (
    bwrap.SystemEntry("/usr"),
    bwrap.SystemEntry("/bin", "usr/bin"),
    bwrap.SystemEntry("/etc"),
)


def pairs(args: list[str], flag: str) -> list[tuple[str, str]]:
    return [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a == flag]


def test_a_task_sees_the_system_read_only_and_its_own_directory_only() -> None:
    args = bwrap.argv("/usr/bin/bwrap", task_dir="/home/ann/.local/state/t.1", layout=LAYOUT)
    assert args[0] == "/usr/bin/bwrap" and args[-1] == "--"
    assert pairs(args, "--ro-bind") == [("/usr", "/usr"), ("/etc", "/etc")]
    assert pairs(args, "--symlink") == [("usr/bin", "/bin")]
    assert pairs(args, "--bind") == [("/home/ann/.local/state/t.1", TASK_MOUNT)]
    assert args[args.index("--chdir") + 1] == TASK_MOUNT
    # Nothing of the owner's: no path under /home other than the task's own directory.
    assert [a for a in args if a.startswith("/home")] == ["/home/ann/.local/state/t.1"]
    for flag in ("--unshare-all", "--die-with-parent", "--new-session"):
        assert flag in args


def test_the_task_directory_is_bound_after_the_fresh_tmp_it_lives_in() -> None:
    args = bwrap.argv("bwrap", task_dir="/w/t.1", layout=LAYOUT, tmp_size_mb=8)
    tmp = args.index("/tmp", args.index("--tmpfs"))
    assert args[tmp - 2 : tmp - 2 + 1] == [str(8 * 1024 * 1024)]  # --size before --tmpfs
    assert tmp < args.index("--bind")
    assert ("/proc" in args) and ("/dev" in args)


def test_no_network_unless_the_task_asks_for_it() -> None:
    off = bwrap.argv("bwrap", task_dir="/w", layout=LAYOUT, resolver=LAYOUT[:1])
    on = bwrap.argv("bwrap", task_dir="/w", layout=LAYOUT, network=True, resolver=LAYOUT[:1])
    assert "--share-net" not in off and "--share-net" in on
    assert pairs(on, "--ro-bind").count(("/usr", "/usr")) == 2  # the resolver dir, here /usr
    assert pairs(off, "--ro-bind").count(("/usr", "/usr")) == 1


def test_the_system_layout_keeps_links_as_links(tmp_path: Path) -> None:
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")
    paths = (str(tmp_path / "usr"), str(tmp_path / "bin"), str(tmp_path / "absent"))
    assert bwrap.system_layout(paths) == (
        bwrap.SystemEntry(paths[0]),
        bwrap.SystemEntry(paths[1], "usr/bin"),
    )


def test_a_missing_bwrap_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    got = bwrap.probe(str(tmp_path / "no-bwrap"))
    assert not got.ok and "not found" in got.reason and "bubblewrap" in got.reason


def test_a_bwrap_that_fails_says_what_it_said(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    got = bwrap.probe(str(fake))
    assert not got.ok
    assert got.reason.endswith("bwrap: No permissions to create new namespace")


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
def test_the_installed_bwrap_sandboxes_here() -> None:
    got = bwrap.probe("")
    assert got.ok, got.reason
    assert os.path.samefile(got.program, shutil.which("bwrap") or "")


def test_the_mode_follows_root_bwrap_and_the_owners_choice() -> None:
    works = bwrap.Probe(True, "/usr/bin/bwrap")
    broken = bwrap.Probe(False, "", "no bubblewrap (x)")
    assert bwrap.decide(root=True, bwrap=broken, allow_unisolated=False).mode == bwrap.ROOT
    boxed = bwrap.decide(root=False, bwrap=works, allow_unisolated=False)
    assert (boxed.mode, boxed.program, boxed.refuses) == (bwrap.BWRAP, "/usr/bin/bwrap", False)
    none = bwrap.decide(root=False, bwrap=broken, allow_unisolated=False)
    assert none.refuses and none.reason == "no bubblewrap (x)"
    assert "--allow-unisolated" in none.refusal() and "no bubblewrap (x)" in none.refusal()
    opted = bwrap.decide(root=False, bwrap=broken, allow_unisolated=True)
    assert (opted.mode, opted.refuses) == (bwrap.UNISOLATED, False)
