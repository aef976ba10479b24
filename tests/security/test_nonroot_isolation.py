"""Hostile tasks on a volunteer that does not run as root (the README's set-up), on a virtual LAN.

A real throwaway account runs a real ``bjgrid join`` inside a namespace host; its home holds
a canary file and its grid key. Another host submits an app whose tasks try to read them, to
reach a third host although ``network`` is false, to leave a double-forked ``setsid``
process behind, and to swap their output and logs for links to the grid key while collected.
With bubblewrap: the canaries keep content, mtime and inode and appear in no result or log;
the connection fails (a task that asks for the network reaches the same listener, so the
check can fail); no process of the task is left; a legitimate app completes.
Without bubblewrap the volunteer refuses tasks and says why in ``bjgrid status``, unless its
owner passes ``--allow-unisolated`` (then the very same reads succeed: the canaries work).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from bonjourgrid.testbed import VirtualLan
from bonjourgrid.testbed.grid import Grid, patience
from bonjourgrid.testbed.run_as import RunAs
from bonjourgrid.testbed.submit_output import submit_json
from bonjourgrid.testbed.vlan import Host

pytestmark = [
    pytest.mark.vlan,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed"),
    pytest.mark.skipif(shutil.which("useradd") is None, reason="no useradd"),
]

SECRET = "owner-home-canary-" + secrets.token_hex(6)
MARKER = "bjg-escaped-" + secrets.token_hex(6)
PORT = 7811

_ATTACK = textwrap.dedent(
    """
    import os, socket, sys, time
    what = sys.argv[1]
    if what == "read":
        for path in sys.argv[2:]:
            try:
                print(path, open(path).read())
            except OSError as e:
                print(path, "unreadable:", e.strerror)
    elif what == "connect":
        try:
            socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=3).close()
            print("connected")
        except OSError as e:
            print("no connection:", e)
    elif what == "escape":
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp("sh", ["sh", "-c", "sleep 300; : " + sys.argv[2]])
            os._exit(0)
        time.sleep(0.5)
        alive = [p for p in os.listdir("/proc") if p.isdigit()
                 and sys.argv[2].encode() in open(f"/proc/{p}/cmdline", "rb").read()]
        print("escaped child alive" if alive else "no escaped child")
    elif what == "swap":  # an escaped child swaps the logs and the output for links
        open("out.txt", "w").write("legit result")
        if os.fork() == 0:
            os.setsid()
            if os.fork():
                os._exit(0)
            while True:
                for name in ("stdout", "stderr", "out.txt"):
                    try:
                        os.unlink(name)
                        os.symlink(sys.argv[2], name)
                    except OSError:
                        pass
        time.sleep(0.3)
    """
)


@dataclass
class Volunteer:
    lan: VirtualLan
    grid: Grid
    submitter: Host
    host: Host
    target: Host
    user: RunAs
    canaries: dict[Path, tuple[bytes, int, int]]

    def assert_canaries_untouched(self) -> None:
        for path, (content, mtime, inode) in self.canaries.items():
            st = os.stat(path)
            assert path.read_bytes() == content, f"{path} changed"
            assert (st.st_mtime_ns, st.st_ino) == (mtime, inode), f"{path} touched"

    def secrets(self) -> list[bytes]:
        return [content.strip() for content, _, _ in self.canaries.values()]


@pytest.fixture
def account() -> Iterator[tuple[str, Path]]:
    """A real throwaway account whose home is a fresh folder (removed at teardown)."""
    name = "bjgt" + secrets.token_hex(4)
    base = Path(tempfile.mkdtemp(prefix="bjgrid-nonroot-", dir="/var/tmp"))
    base.chmod(0o711)
    subprocess.run(
        ["useradd", "--no-create-home", "--home-dir", str(base / "lan"), "--shell",
         "/usr/sbin/nologin", "--user-group", name],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield name, base
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def volunteer(account: tuple[str, Path]) -> Iterator[Volunteer]:
    name, base = account
    pw = pwd.getpwnam(name)
    lan = VirtualLan(3, base_dir=base / "lan")
    try:
        lan.start()
        base.joinpath("lan").chmod(0o711)
        grid = Grid(lan)
        submitter, host, target = lan.hosts
        home = host.home  # the volunteer's BJGRID_HOME and HOME: its own
        (home / "config").mkdir(parents=True)
        key = home / "config" / "grid.key"
        shutil.copy(grid.key_file, key)
        key.chmod(0o600)
        canary = home / "secret.txt"
        canary.write_text(SECRET + "\n")
        canary.chmod(0o600)
        for path in (home, *home.rglob("*")):
            os.chown(path, pw.pw_uid, pw.pw_gid)
        home.chmod(0o700)
        user = RunAs(pw.pw_uid, pw.pw_gid, home, name, {"BJGRID_KEY_FILE": str(key)})
        facts = {p: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in (key, canary)}
        yield Volunteer(lan, grid, submitter, host, target, user, facts)
    finally:
        lan.close()


def join(v: Volunteer, *args: str) -> None:
    v.grid.join(v.host, "--slots", "2", *args, as_user=v.user)
    v.grid.wait_daemon(v.host)


def daemon_uid(v: Volunteer) -> int:
    proc = v.grid.daemons[v.host.name]
    return psutil.Process(proc.pid).uids().real


def row_of(v: Volunteer, timeout: float) -> dict[str, object]:
    """The volunteer's row in ``bjgrid status`` on the submitter, once it is listed idle."""
    deadline = time.monotonic() + timeout
    rows: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        rows = v.grid.status(v.submitter)
        mine = [r for r in rows if r["host"] == v.host.name and r["reachable"]]
        if mine and mine[0]["state"] == "idle" and mine[0].get("isolation"):
            return mine[0]
        time.sleep(0.3)
    raise TimeoutError(f"{v.host.name} not listed idle: {rows}\n{v.grid.log(v.host)[-3000:]}")


def write_app(folder: Path, v: Volunteer, name: str, only: tuple[str, ...] = ()) -> Path:
    """The hostile app (``only``: just these of its tasks)."""
    folder.mkdir(parents=True)
    (folder / "attack.py").write_text(_ATTACK)
    home = v.user.home
    reads = ["python3", "attack.py", "read", str(home / "secret.txt"),
             str(home / "config" / "grid.key")]  # fmt: skip
    tasks: list[dict[str, object]] = [
        {"id": "read", "command": reads},
        {"id": "connect", "command": ["python3", "attack.py", "connect", v.target.address,
                                      str(PORT)]},
        {"id": "netok", "command": ["python3", "attack.py", "connect", v.target.address,
                                    str(PORT)], "requirements": {"network": True}},
        {"id": "escape", "command": ["python3", "attack.py", "escape", MARKER]},
        {"id": "swap", "command": ["python3", "attack.py", "swap", str(home / "config" /
                                   "grid.key")], "outputs": ["out.txt"]},
        *({"id": f"sq{n}", "command": f"echo $(({n}*{n})) > sq.txt", "outputs": ["sq.txt"]}
          for n in (1, 2, 3)),
    ]  # fmt: skip
    tasks = [t for t in tasks if not only or t["id"] in only]
    spec = {"version": 1, "name": name, "workers": 1, "files": ["attack.py"], "tasks": tasks}
    (folder / "app.json").write_text(json.dumps(spec))
    return folder / "app.json"


def submit(v: Volunteer, app: Path, out: Path, *extra: str) -> tuple[int, dict[str, object], str]:
    r = v.grid.cli(v.submitter, "submit", str(app), "--json", "-o", str(out), *extra, timeout=240)
    text = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    try:
        doc = submit_json(r.stdout)
    except ValueError:
        raise AssertionError(text[-3000:]) from None
    return r.returncode, doc, text


def stdout(out: Path, task: str) -> str:
    return (out / task / "stdout").read_text()


def marker_processes(*markers: str) -> list[int]:
    """Processes of the test's tasks: the escaped ``sleep``'s marker, or ``markers`` (the
    swapper's argv names the key in the volunteer's home) in their argv."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any(m in part for part in p.info["cmdline"] or () for m in (MARKER, *markers)):
            found.append(p.pid)
    return found


def listen(v: Volunteer) -> subprocess.Popen[bytes]:
    """A TCP listener on the third host: what a task with no network must not reach."""
    code = (
        f"import socket; s = socket.create_server(('0.0.0.0', {PORT})); "
        "print('up', flush=True)\nwhile True: s.accept()[0].close()"
    )
    proc = v.target.popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
    return proc


def every_file(*folders: Path) -> Iterator[Path]:
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                yield path


def test_tasks_on_a_non_root_volunteer_cannot_read_its_home_reach_the_lan_or_stay_behind(
    volunteer: Volunteer, tmp_path: Path
) -> None:
    v = volunteer
    listen(v)
    join(v)
    assert daemon_uid(v) == v.user.uid != 0
    row = row_of(v, patience(40.0))
    assert row["isolation"] == "bwrap", row

    out = tmp_path / "out"
    code, doc, text = submit(v, write_app(tmp_path / "app", v, "hostile"), out)
    tasks = {t["id"]: t for t in doc["results"]["tasks"]}  # type: ignore[index]
    assert all(t["worker"] == v.host.name for t in tasks.values())
    assert code in (0, 1), text[-3000:]
    assert [i for i, t in tasks.items() if t["state"] != "done"] in ([], ["swap"]), tasks
    if tasks["swap"]["state"] == "done":  # else refused: a link left by the swapper
        assert (out / "swap" / "out.txt").read_text() == "legit result"

    # (a) the owner's home is not there: neither the canary nor the grid key.
    assert stdout(out, "read").count("unreadable: No such file or directory") == 2
    # (b) no network with network: false; the same listener is reachable with network: true.
    assert stdout(out, "connect").startswith("no connection:")
    assert stdout(out, "netok").strip() == "connected"
    # (c) the escaped child ran while the task did, and is gone with it.
    assert stdout(out, "escape").strip() == "escaped child alive"
    deadline = time.monotonic() + 5.0
    home = str(v.user.home)
    while marker_processes(home) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker_processes(home) == []
    # The legitimate tasks of the same app: correct results.
    assert [(out / f"sq{n}" / "sq.txt").read_text() for n in (1, 2, 3)] == ["1\n", "4\n", "9\n"]

    v.assert_canaries_untouched()
    for path in every_file(out, v.submitter.home, v.host.home / "log"):
        data = path.read_bytes()
        for secret in v.secrets():
            assert secret not in data, f"a canary leaked into {path}"
    for secret in v.secrets():
        assert secret.decode() not in text + v.grid.log(v.host)


def test_without_bubblewrap_the_volunteer_refuses_tasks_unless_its_owner_allows_them(
    volunteer: Volunteer, tmp_path: Path
) -> None:
    v = volunteer
    config = v.host.home / "config" / "volunteer.toml"
    config.write_text('[sandbox]\nbwrap = "/nonexistent/bwrap"\n')
    os.chown(config, v.user.uid, v.user.gid)
    join(v)
    row = row_of(v, patience(40.0))
    assert row["isolation"] == "none"
    assert "/nonexistent/bwrap not found" in str(row["isolation_reason"])
    table = v.grid.cli(v.submitter, "status", "--timeout", "3").stdout.decode()
    assert f"{v.host.name} refuses tasks: no bubblewrap" in table
    assert "refuses tasks" in v.grid.log(v.host)

    refused = write_app(tmp_path / "refused", v, "refused")
    code, _, text = submit(v, refused, tmp_path / "o1", "--wait-timeout", "20")  # fail fast
    assert code == 3, text[-3000:]
    assert "no isolation for tasks here" in text
    assert not (v.host.home / "log" / "executions.jsonl").exists()
    v.assert_canaries_untouched()

    v.grid.stop(v.host)
    join(v, "--allow-unisolated")
    assert row_of(v, patience(40.0))["isolation"] == "unisolated"
    out = tmp_path / "o2"
    harmless = ("read", "sq1", "sq2", "sq3")  # unisolated, an escaped child would stay
    code, _, text = submit(v, write_app(tmp_path / "allowed", v, "allowed", harmless), out)
    assert code == 0, text[-3000:]
    assert [(out / f"sq{n}" / "sq.txt").read_text() for n in (1, 2, 3)] == ["1\n", "4\n", "9\n"]
    # What isolation prevents: unisolated, the very same task reads the owner's secrets.
    assert SECRET in stdout(out, "read")
