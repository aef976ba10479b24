"""A real HTCondor CE on a virtual LAN: members join, outsiders are refused, a job runs.

One LAN of four hosts for the module: h1 runs the CE head; h2 a startd with a token of this CE;
h3 a startd with no token; h4 a startd with a token signed by another CE's key. The bindings
run inside h1's network namespace (a child process: the test runs in the root namespace).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bonjourgrid.ce_backends.condor import config, security
from bonjourgrid.ce_backends.condor.daemons import CondorDaemons
from bonjourgrid.ce_backends.condor.installation import Installation, find
from bonjourgrid.testbed import VirtualLan, available

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HELPER = Path(__file__).with_name("_in_host.py")
PORT = 9700
HEAD_DAEMONS = ["MASTER", "COLLECTOR", "NEGOTIATOR", "SCHEDD"]
EXEC_DAEMONS = ["MASTER", "STARTD"]
JOIN_TIMEOUT_S = 20.0

pytestmark = pytest.mark.vlan


def _require_condor() -> Installation:
    ok, reason = available()
    inst = find()
    if ok and inst is not None:
        return inst
    why = reason if not ok else "no HTCondor (run scripts/setup-condor)"
    if IN_CI:
        pytest.fail(f"HTCondor pool tests cannot run in CI: {why}", pytrace=False)
    pytest.skip(f"HTCondor pool tests: {why}")


@dataclass
class Pool:
    inst: Installation
    lan: VirtualLan
    names: config.CeNames
    base: Path
    key: Path
    head: CondorDaemons
    params: dict[str, str]
    outsiders: dict[str, CondorDaemons]

    def ask(self, request: dict[str, object], timeout: float = 30) -> dict[str, object]:
        """Run the htcondor2 helper in h1's network namespace (the machine's own host name,
        which resolves: see jobs._check_own_name)."""
        res = subprocess.run(
            ["ip", "netns", "exec", self.lan.hosts[0].netns, sys.executable, str(HELPER)],
            input=json.dumps({"params": self.params, **request}).encode(),
            capture_output=True,
            timeout=timeout,
        )
        assert res.returncode == 0, res.stderr.decode()[-800:] + self.head.diagnostics()
        answer: dict[str, object] = json.loads(res.stdout)
        return answer

    def machines(self) -> list[str]:
        return list(self.ask({"do": "machines"})["machines"])  # type: ignore[call-overload]


def _worker(
    inst: Installation, pool_dir: Path, host_index: int, lan: VirtualLan, names: config.CeNames,
    token: str | None,
) -> CondorDaemons:  # fmt: skip
    host = lan.hosts[host_index]
    wdir = pool_dir / f"w-{host.name}"
    if token is not None:
        security.install_token(wdir / "tokens", "ce", token)
    else:
        (wdir / "tokens").mkdir(parents=True)
    text = config.execute_config(
        names, address=host.address, head_address=lan.hosts[0].address, head_port=PORT,
        local_dir=wdir / "local", token_dir=wdir / "tokens", cpus=1, memory_mb=512,
    )  # fmt: skip
    return CondorDaemons(inst, wdir, text, daemons=EXEC_DAEMONS, spawn=host.popen)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    inst = _require_condor()
    base = tmp_path_factory.mktemp("condor")
    names = config.CeNames("ce1")
    started: list[CondorDaemons] = []
    with VirtualLan(4, base_dir=base / "lan", name="condor") as lan:
        try:
            a = lan.hosts[0]
            head_dir = base / "head"
            key = security.make_signing_key(inst, base / "keys")
            head_token = security.mint_token(
                inst, key, trust_domain=names.trust_domain, identity=names.head
            )
            security.install_token(head_dir / "tokens", "head", head_token)
            client_tokens = base / "client-tokens"
            security.install_token(
                client_tokens, "ce1",
                security.mint_token(
                    inst, key, trust_domain=names.trust_domain, identity=names.submitter
                ),
            )  # fmt: skip
            head = CondorDaemons(
                inst, head_dir,
                config.head_config(
                    names, address=a.address, port=PORT, local_dir=head_dir / "local",
                    key_file=key, token_dir=head_dir / "tokens",
                ),
                daemons=HEAD_DAEMONS, binds=[key.parent], spawn=a.popen,
            )  # fmt: skip
            started.append(head.start())
            # The rival CE: same names, its own key.
            rival_key = security.make_signing_key(inst, base / "rival-keys")
            rival_token = security.mint_token(
                inst, rival_key, trust_domain=names.trust_domain, identity=names.worker("h4")
            )
            member_token = security.mint_token(
                inst, key, trust_domain=names.trust_domain, identity=names.worker("h2")
            )
            outsiders = {
                "member": _worker(inst, base, 1, lan, names, member_token),
                "no-token": _worker(inst, base, 2, lan, names, None),
                "other-key": _worker(inst, base, 3, lan, names, rival_token),
            }
            for w in outsiders.values():
                started.append(w.start())
            for d in started:
                d.wait_ready()
            params = config.client_params(
                names, head_address=a.address, head_port=PORT, token_dir=client_tokens
            )
            yield Pool(inst, lan, names, base, key, head, params, outsiders)
        finally:
            for d in reversed(started):
                d.stop()
    leftovers = [p for p in (base / "head", base / "w-h2") if p.exists()]
    assert not leftovers, f"files left behind: {leftovers}"


def _wait_for(pool: Pool, pred: object, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        got = pool.machines()
        if pred(got) or time.monotonic() > deadline:  # type: ignore[operator]
            return got
        time.sleep(0.3)


def test_minted_token_names_the_ce_and_the_identity(pool: Pool) -> None:
    token = security.mint_token(
        pool.inst, pool.key, trust_domain=pool.names.trust_domain, identity="x@y"
    )
    header, payload, _sig = (
        json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) or b"{}")
        if i < 2 else p
        for i, p in enumerate(token.split("."))
    )  # fmt: skip
    assert header == {"alg": "HS256", "kid": "POOL"}
    assert payload["iss"] == "ce1.bjgrid" and payload["sub"] == "x@y"
    assert payload["exp"] > time.time()


def test_a_member_startd_joins_the_pool(pool: Pool) -> None:
    member = pool.lan.hosts[1].address.replace(".", "-") + ".bjgrid"
    got = _wait_for(pool, lambda m: member in m, JOIN_TIMEOUT_S)
    assert member in got


def test_startds_without_a_valid_token_are_refused(pool: Pool) -> None:
    member = pool.lan.hosts[1].address.replace(".", "-") + ".bjgrid"
    _wait_for(pool, lambda m: member in m, JOIN_TIMEOUT_S)
    # Give the outsiders several update attempts (UPDATE_INTERVAL 5 s, first one at start).
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert pool.machines() == [member]
        time.sleep(0.5)
    log = pool.head.log("Collector")
    for host in pool.lan.hosts[2:]:
        assert host.address in log, f"no trace of {host.name} in the CollectorLog"
    # The one with another CE's key: the collector rejects its token.
    denials = [line for line in log.splitlines() if "DENIED" in line or "failed" in line]
    assert any(pool.lan.hosts[3].address in line for line in denials), log[-3000:]
    # The one with no token cannot authenticate at all: its startd never sends its update
    # (the collector only sees a connection with no request in it).
    no_token = pool.outsiders["no-token"].log("Start")
    assert "Failed to start non-blocking update" in no_token, no_token[-2000:]
    assert "security policy is invalid" in no_token, no_token[-2000:]


def test_a_job_with_an_input_and_a_declared_output_runs_end_to_end(pool: Pool) -> None:
    member = pool.lan.hosts[1].address.replace(".", "-") + ".bjgrid"
    _wait_for(pool, lambda m: member in m, JOIN_TIMEOUT_S)
    uid_gid = pool.inst.user_id(config.JOB_USER)
    assert uid_gid is not None
    job_dir = pool.head.role_dir / "jobs" / "t1"
    job_dir.mkdir(parents=True)
    (job_dir / "in.txt").write_text("hello\n")
    for p in (job_dir, job_dir / "in.txt"):
        os.chown(p, *uid_gid)
    spec = {
        "name": "t1",
        "argv": ["/bin/sh", "-c", 'tr a-z A-Z < in.txt > out.txt && echo "$GREETING"'],
        "job_dir": str(job_dir),
        "inputs": ["in.txt"],
        "outputs": ["out.txt"],
        "env": {"GREETING": "hi there"},
        "max_retries": 1,
    }
    answer = pool.ask({"do": "run", "spec": spec, "timeout": 30}, timeout=40)
    assert answer.get("state") == "done", answer
    assert answer["exit_code"] == 0
    assert member in str(answer["remote_host"])
    assert (job_dir / "out.txt").read_text() == "HELLO\n"
    assert (job_dir / "stdout").read_text() == "hi there\n"
