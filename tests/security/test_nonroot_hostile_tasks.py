"""Hostile tasks on a volunteer that does not run as root: real account, real bubblewrap.

The attacks of the root suite (``test_hostile_tasks.py``) run again through ``run_task`` /
``EmbeddedWorker``, this time in a process of a throwaway non-root account (``as_account.py``),
where the sandbox has no slot account and no cgroup: bubblewrap's namespaces, the task's
process tree and the collector's descriptor-relative reads must hold on their own. The
canaries sit in the account's home, where its daemon (and so a broken collector) can read
them: its own grid key (0600, the account's) and a root-owned log it may read. Each test
asserts the root suite's safe outcome, that no process of the task outlived it (the
account's process list, checked by the child), and that the canaries keep content, mtime and
inode.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bonjourgrid.ce_backends.embedded.isolation import signal_all_of

from . import test_hostile_tasks as hostile
from .as_account import Account
from .test_nonroot_isolation import account  # noqa: F401  (the throwaway account fixture)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="makes a throwaway account (useradd)"),
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv"),
]


@pytest.fixture
def volunteer(account: tuple[str, Path]) -> Iterator[Account]:  # noqa: F811
    """The account's home (0700, its own) with the canaries and its work dir (``scratch``)."""
    name, base = account
    pw = pwd.getpwnam(name)
    home = base / "home"
    scratch = home / "work"
    for d in (home, home / "config", home / "log", scratch, scratch / "tasks", scratch / "files"):
        d.mkdir()
        os.chown(d, pw.pw_uid, pw.pw_gid)
    home.chmod(0o700)
    key, log = home / "config" / "grid.key", home / "log" / "daemon.log"
    key.write_text(hostile.SECRET)
    os.chown(key, pw.pw_uid, pw.pw_gid)
    key.chmod(0o600)
    log.write_text(hostile.ROOT_LOG)
    log.chmod(0o644)  # root's, readable by the account
    facts = {p: (p.read_bytes(), os.stat(p).st_mtime_ns, os.stat(p).st_ino) for p in (key, log)}
    yield Account(pw.pw_uid, pw.pw_gid, home, scratch, key, log)
    signal_all_of(pw.pw_uid, signal.SIGKILL)  # a failed defence leaves no process behind
    hostile.Canaries(key, log, facts).assert_untouched()


# --- the root suite's attacks, as they are ---------------------------------------------------


def _as_on_root(body: Callable[..., None], **params: str) -> object:
    suffix = "".join(f"[{v}]" for v in params.values())
    return pytest.param(body, params, id=body.__name__.removeprefix("test_") + suffix)


AS_ON_ROOT = [
    _as_on_root(hostile.test_escaped_child_swapping_outputs_and_logs_for_links_gets_no_canary),
    _as_on_root(hostile.test_a_fifo_swapped_in_for_an_output_never_blocks_the_event_loop),
    _as_on_root(hostile.test_a_fifo_output_fails_the_task_with_the_reason),
    _as_on_root(hostile.test_a_hard_link_to_a_readable_file_is_not_collected),
    _as_on_root(hostile.test_a_link_in_an_output_folder_is_refused),
    _as_on_root(hostile.test_outputs_over_the_cap_fail_cleanly_with_a_small_result, big="output"),
    _as_on_root(hostile.test_outputs_over_the_cap_fail_cleanly_with_a_small_result, big="stdout"),
    _as_on_root(hostile.test_a_decompression_bomb_as_inputs_fails_staging),
    _as_on_root(hostile.test_too_many_entries_as_inputs_fail_staging),
    _as_on_root(hostile.test_a_decompression_bomb_as_a_bundle_is_refused_and_nothing_stays),
    _as_on_root(hostile.test_a_double_forked_memory_hog_is_killed_by_the_cap),
    _as_on_root(hostile.test_suspension_stops_double_forked_processes_too),
]
"""Bodies of the root suite that hold unchanged for a non-root daemon (run as the account;
``as_account.py`` says how their pid and slot-uid checks read there)."""


@pytest.mark.parametrize(("attack", "params"), AS_ON_ROOT)
def test_a_root_suite_attack_fails_the_same_way_on_a_non_root_volunteer(
    volunteer: Account, attack: Callable[..., None], params: dict[str, str]
) -> None:
    volunteer.run(attack, **params)


# --- slots: the root suite's marker folder is out of a bubblewrapped task's reach ------------


def more_run_tasks_than_slots_are_refused_never_run(tmp_path: Path) -> None:
    """As the account: a task that runs says so over loopback (tasks that ask for the network
    share the daemon's), its only way out of the sandbox."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    said: list[str] = []
    done = threading.Event()

    def hear() -> None:  # until the backlog is empty once the worker closed
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                if done.is_set():
                    return
                continue
            with conn:
                said.append(conn.recv(64).decode())

    ear = threading.Thread(target=hear)
    ear.start()
    tell = "import socket; socket.create_connection(('127.0.0.1', %d)).sendall(b'%s')"
    try:
        hostile.refuse_what_does_not_fit_two_slots(
            tmp_path, lambda task: f'python3 -c "{tell % (port, task)}"', network=True
        )
    finally:
        done.set()
        ear.join()
        listener.close()
    assert sorted(said) == ["one", "two"]


def test_more_run_tasks_than_slots_are_refused_never_run_on_a_non_root_volunteer(
    volunteer: Account,
) -> None:
    volunteer.run(more_run_tasks_than_slots_are_refused_never_run)
