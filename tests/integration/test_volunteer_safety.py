"""A volunteer's owner and machine come first, on a virtual LAN (issue 7's "done when").

One LAN: h0 submits (its user has signing key "alice"), h1 and h2 volunteer with
``trusted_users = [alice]`` and a short maximum suspension in their ``volunteer.toml``.

- owner policy: owner activity injected on the volunteer running a task stops the task's
  processes (SIGSTOP, seen in /proc) within the poll interval, continues them when the
  owner leaves; an owner who stays past ``max_suspension`` makes the volunteer give the task
  back, and it completes on the other volunteer (retries 0: a give-back is not a failure);
- sandbox caps through `bjgrid submit`: writing outside the sandbox, reading another task's
  directory, returning a link to /etc/passwd, exceeding the memory cap: each fails with its
  reason and the volunteer is unharmed; a task gets the network only when it asks for it;
- signed apps: an app signed by a key the volunteers do not trust is refused (the app fails
  within the recruit timeout, the reason says so); signed by the trusted key, it runs.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bonjourgrid.testbed import Host, VirtualLan
from bonjourgrid.testbed.grid import Grid, reservations
from bonjourgrid.testbed.submit_output import submit_json

pytestmark = pytest.mark.vlan

MAX_SUSPENSION = 3.0
SUSPEND_LATENCY_MAX = 2.0
"""The requirement is 1 s (poll interval 0.2 s in the fast profile); asserted with a margin
for a loaded 2-core box, and printed."""


class Lan:
    def __init__(self, lan: VirtualLan, base: Path) -> None:
        self.lan, self.base = lan, base
        self.grid = Grid(lan)
        self.h0 = lan.hosts[0]
        self.volunteers = lan.hosts[1:3]


def _write_volunteer_toml(host: Host, trusted: str) -> None:
    config = host.home / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "volunteer.toml").write_text(
        f"trusted_users = [{json.dumps(trusted)}]\n"
        f"[policy]\nmax_suspension = {MAX_SUSPENSION}\nresume_after = 0.5\n"
    )


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    base = tmp_path_factory.mktemp("safety-lan")
    lan = VirtualLan(3, base_dir=base)
    try:
        lan.start()
        s = Lan(lan, base)
        r = s.grid.cli(s.h0, "keygen", "--user", "--name", "alice")
        assert r.returncode == 0, r.stderr
        pub = (s.h0.home / "config" / "user.pub").read_text().strip()
        for h in s.volunteers:
            _write_volunteer_toml(h, pub)
        s.grid.join_all(s.volunteers, "--slots", "2")
        s.grid.wait_idle(s.h0, s.volunteers)
        yield s
    finally:
        lan.close()


def _app(base: Path, name: str, tasks: list[dict[str, object]], **top: object) -> Path:
    folder = base / name
    folder.mkdir(exist_ok=True)
    doc = {"name": name, "workers": 1, "tasks": tasks, **top}
    (folder / "app.json").write_text(json.dumps(doc))
    return folder / "app.json"


def _submit(s: Lan, app: Path, out: Path, *extra: str, timeout: float = 120.0) -> tuple[int, dict]:
    r = s.grid.cli(s.h0, "submit", str(app), "--json", "-o", str(out), *extra, timeout=timeout)
    try:
        doc = submit_json(r.stdout)
    except ValueError:
        raise AssertionError(r.stderr.decode(errors="replace")[-3000:]) from None
    return r.returncode, doc


def _tasks(doc: dict) -> dict[str, dict]:
    return {t["id"]: t for t in doc["results"]["tasks"]}


def _find_process(argv: list[str], timeout: float) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in psutil.process_iter(["cmdline"]):
            if p.info["cmdline"] == argv:
                return p
        time.sleep(0.05)
    raise TimeoutError(f"no process {argv} within {timeout} s")


def _wait_status(p: psutil.Process, stopped: bool, timeout: float) -> float:
    """Seconds until the process is (or is no longer) stopped."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if (p.status() == psutil.STATUS_STOPPED) == stopped:
            return time.monotonic() - start
        time.sleep(0.01)
    raise TimeoutError(f"process {p.pid} {'not stopped' if stopped else 'still stopped'}")


def _ran_on(host: Host, task: str) -> list[int]:
    log = host.home / "log" / "executions.jsonl"
    if not log.exists():
        return []
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e["attempt"] for e in entries if e["task"] == task]


def _set_owner(host: Host, word: str) -> None:
    (host.home / "state" / "owner-activity").write_text(word + "\n")


def test_owner_back_suspends_resumes_and_gives_back(shared: Lan) -> None:
    s = shared
    argv = ["sleep", "6.317"]
    app = _app(
        s.base,
        "owner",
        [
            {
                "id": "long",
                "command": "sleep 6.317 && echo ok > out.txt",
                "outputs": ["out.txt"],
                "retries": 0,
            }
        ],
    )
    out = s.base / "owner-out"
    proc = s.grid.popen_cli(
        s.h0, "submit", str(app), "--json", "-o", str(out),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    busy: Host | None = None
    try:
        task = _find_process(argv, timeout=30)
        busy = next(h for h in s.volunteers if _ran_on(h, "long"))
        other = next(h for h in s.volunteers if h is not busy)

        _set_owner(busy, "busy")
        suspend_latency = _wait_status(task, stopped=True, timeout=10)
        _set_owner(busy, "idle")
        resume_latency = _wait_status(task, stopped=False, timeout=10)
        print(f"\nsuspend latency {suspend_latency:.3f} s; resume after {resume_latency:.3f} s")
        assert suspend_latency < SUSPEND_LATENCY_MAX
        assert task.is_running()  # continued, not killed

        _set_owner(busy, "busy")
        _wait_status(task, stopped=True, timeout=10)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if busy is not None:
            _set_owner(busy, "idle")
    assert proc.returncode == 0, stderr.decode(errors="replace")[-3000:]
    doc = submit_json(stdout)
    row = _tasks(doc)["long"]
    assert row["state"] == "done" and row["worker"] == other.name, row
    assert (out / "long" / "out.txt").read_text() == "ok\n"
    assert _ran_on(busy, "long") == [1] and _ran_on(other, "long") == [2]
    assert not task.is_running()  # the given-back attempt was killed on the busy machine
    released = [e for e in reservations(busy) if e["event"] == "released"]
    assert released and "owner" in str(released[-1]["reason"])
    s.grid.wait_idle(s.h0, s.volunteers, timeout=30)


def test_sandbox_caps_through_submit(shared: Lan) -> None:
    s = shared
    probe = Path("/etc/bjgrid-sandbox-probe")
    passwd = Path("/etc/passwd").read_bytes()
    app = _app(
        s.base,
        "caps",
        [
            {"id": "secret", "command": "echo s3cr3t-7 > secret.txt && sleep 5", "retries": 0},
            {
                "id": "snoop",
                "command": "sleep 1.5; for f in /proc/[0-9]*/cwd/secret.txt; do "
                'cat "$f" && exit 0; done; exit 3',
                "retries": 0,
            },
            {"id": "escape", "command": f"echo pwned > {probe}", "retries": 0},
            {
                "id": "link",
                "command": "ln -s /etc/passwd passwd.txt",
                "outputs": ["passwd.txt"],
                "retries": 0,
            },
            {
                "id": "memhog",
                "command": [
                    "python3",
                    "-c",
                    "b = bytearray(200 << 20); import time; time.sleep(10)",
                ],
                "retries": 0,
                "requirements": {"memory_mb": 64},
            },
            {"id": "offline", "command": "cat /proc/net/dev > net.txt", "outputs": ["net.txt"]},
            {
                "id": "online",
                "command": "cat /proc/net/dev > net.txt",
                "outputs": ["net.txt"],
                "requirements": {"network": True},
            },
        ],
    )
    out = s.base / "caps-out"
    code, doc = _submit(s, app, out)
    rows = _tasks(doc)
    assert code == 1, doc
    for tid in ("snoop", "escape", "link", "memhog"):
        assert rows[tid]["state"] == "failed", rows[tid]
    assert rows["secret"]["state"] == "done"
    assert rows["snoop"]["exit_code"] == 3
    assert "s3cr3t" not in (out / "snoop" / "stdout").read_text()
    assert "Permission denied" in (out / "escape" / "stderr").read_text()
    assert not probe.exists()
    assert "symbolic link resolves outside" in (out / "link" / "stderr").read_text()
    assert not (out / "link" / "passwd.txt").exists()
    assert "memory limit exceeded (64 MB)" in (out / "memhog" / "stderr").read_text()
    assert rows["memhog"]["exit_code"] is None
    assert rows["offline"]["state"] == rows["online"]["state"] == "done"
    offline = (out / "offline" / "net.txt").read_text()
    assert "lo:" in offline and "eth0" not in offline
    assert "eth0" in (out / "online" / "net.txt").read_text()
    # the volunteer is unharmed: files intact, back to idle, and it runs the next app
    assert Path("/etc/passwd").read_bytes() == passwd
    s.grid.wait_idle(s.h0, s.volunteers, timeout=30)


def test_app_with_dotdot_output_refused_at_submit(shared: Lan) -> None:
    s = shared
    app = _app(s.base, "dotdot", [{"id": "t", "command": "true", "outputs": ["../../etc/passwd"]}])
    r = s.grid.cli(s.h0, "submit", str(app), timeout=60)
    assert r.returncode == 2
    assert b".." in r.stderr and b"outputs" in r.stderr


def test_untrusted_signature_refused_trusted_runs(shared: Lan) -> None:
    s = shared
    mallory = s.base / "mallory.key"
    r = s.grid.cli(s.h0, "keygen", "--user", "--name", "mallory", "-o", str(mallory))
    assert r.returncode == 0, r.stderr
    app = _app(s.base, "signed", [{"id": "t", "command": "echo hi > o.txt", "outputs": ["o.txt"]}])

    start = time.monotonic()
    code, doc = _submit(
        s, app, s.base / "signed-bad", "--sign-key", str(mallory), "--fresh",
        "--wait-timeout", "20",  # apps wait for volunteers by default: fail fast here
    )  # fmt: skip
    took = time.monotonic() - start
    print(f"\nuntrusted app failed after {took:.1f} s: {doc['reason']}")
    assert code == 3, doc
    assert "not in trusted_users" in doc["reason"] and "mallory" in doc["reason"]
    assert took < 40
    for h in s.volunteers:
        assert not _ran_on(h, "t")
        assert any(e["event"] == "refused" for e in reservations(h))

    code, doc = _submit(s, app, s.base / "signed-good", "--fresh")  # alice's key: trusted
    assert code == 0, doc
    assert (s.base / "signed-good" / "t" / "o.txt").read_text() == "hi\n"
