"""A real Debian boinc-client on one LAN host computes for a project served on another.

One LAN and one client for the module (start-up and attach are the slow part): h1 serves the
projects (bound to its link-local address), h2 runs ``boinc`` in its own data directory and is
driven through GUI RPC from sockets made inside h2. Teardown stops the client by its PID and
the LAN kills whatever is left.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from boinc_helpers import IN_CI, netns_socket_factory, require_boinc

from bonjourgrid.app.bundle import pack_files, unpack_files
from bonjourgrid.ce_backends.boinc.client import BoincClient
from bonjourgrid.ce_backends.boinc.issuer import IssuerConfig
from bonjourgrid.ce_backends.boinc.project import Finished, Project, ProjectConfig
from bonjourgrid.ce_backends.boinc.signing import CodeSignKey
from bonjourgrid.ce_backends.boinc.wrapper import StoredFile, app_files
from bonjourgrid.testbed import VirtualLan, available

pytestmark = pytest.mark.vlan

RESULT_TIMEOUT = 90.0
"""Generous: attach, downloads and three short tasks take ~10 s here."""
RPC_DELAY = 2.0
"""``next_rpc_delay`` for the tests: nothing waits on BOINC's own back-offs."""
NUDGE_INTERVAL = 1.0


@dataclass
class Bed:
    lan: VirtualLan
    client: BoincClient
    tmp: Path


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    ok, reason = available()
    if not ok:
        if IN_CI:
            pytest.fail(f"virtual LAN unavailable in CI: {reason}", pytrace=False)
        pytest.skip(f"virtual LAN unavailable: {reason}")
    require_boinc()
    tmp = tmp_path_factory.mktemp("boinc")
    lan = VirtualLan(2, base_dir=tmp / "lan", name="boinc").start()
    try:
        h1, h2 = lan.hosts
        client = BoincClient(
            tmp / "client",
            gui_rpc_port=31416,
            ncpus=2,
            network_test_url=f"http://{h1.address}:1/",
            launcher=h2.popen,
            socket_factory=netns_socket_factory(h2.netns),
        )
        client.start()
        try:
            yield Bed(lan, client, tmp)
        finally:
            client.stop()
    finally:
        lan.close()


def serve(
    bed: Bed, app_id: str, rpc_delay: float = RPC_DELAY, **kw: object
) -> tuple[Project, queue.Queue[Finished]]:
    results: queue.Queue[Finished] = queue.Queue()
    h1 = bed.lan.hosts[0]
    project = Project(
        app_id=app_id,
        key=kw.pop("key", None) or CodeSignKey.generate(),  # type: ignore[arg-type]
        bundle=kw.pop("bundle", b""),  # type: ignore[arg-type]
        root=bed.tmp / app_id,
        on_result=results.put,
        address=h1.address,
        listen_socket=netns_socket_factory(h1.netns)(),
        config=ProjectConfig(next_rpc_delay=rpc_delay, poll=0.2, issuer=IssuerConfig(grace=60)),
        **kw,  # type: ignore[arg-type]
    )
    return project.start(), results


def collect(
    bed: Bed, project: Project, results: queue.Queue[Finished], n: int
) -> dict[str, Finished]:
    """Wait for ``n`` results, nudging the client as the worker agent does."""
    out: dict[str, Finished] = {}
    deadline = time.monotonic() + RESULT_TIMEOUT
    while len(out) < n:
        if time.monotonic() > deadline:
            pytest.fail(f"only {sorted(out)} of {n} results came back", pytrace=False)
        bed.client.nudge(project.master_url, work_waiting=project.waiting > 0)
        try:
            f = results.get(timeout=NUDGE_INTERVAL)
        except queue.Empty:
            continue
        out[f.task] = f
    return out


def _bundle(tmp: Path) -> bytes:
    src = tmp / "appfiles"
    src.mkdir()
    (src / "upper.sh").write_text('#!/bin/sh\ntr a-z A-Z < "$1"\n')
    (src / "upper.sh").chmod(0o755)
    return pack_files(src, ["upper.sh"])


def _inputs(tmp: Path, name: str, text: str) -> bytes:
    src = tmp / f"in-{name}"
    src.mkdir()
    (src / "data.txt").write_text(text)
    return pack_files(src, ["data.txt"])


def test_tasks_run_on_a_real_client_and_results_come_back(bed: Bed) -> None:
    project, results = serve(bed, "app1", bundle=_bundle(bed.tmp))
    try:
        for i in (1, 2):
            project.submit(
                task=f"t{i}",
                attempt=1,
                command=f"./upper.sh data.txt > out.txt; echo task {i} says $WHO; sleep 1",
                env={"WHO": f"w{i}"},
                outputs=("out.txt",),
                inputs=_inputs(bed.tmp, f"t{i}", f"hello {i}\n"),
            )
        project.submit(task="bad", attempt=1, command="echo broken >&2; exit 7", outputs=("x",))
        started = time.monotonic()
        bed.client.attach(project.master_url, project.authenticator, "bjgrid app1")
        first = collect(bed, project, results, 1)
        first_result_s = time.monotonic() - started
        done = first | collect(bed, project, results, 2)
        all_s = time.monotonic() - started
        print(f"\nattach -> first result {first_result_s:.1f} s; 3 results {all_s:.1f} s; "
              f"{project.rpcs} scheduler RPCs")  # fmt: skip
        for i in (1, 2):
            r = done[f"t{i}"]
            assert (r.exit_code, r.error, r.host) == (0, "", "h2")
            assert r.stdout == f"task {i} says w{i}\n".encode()
            dest = bed.tmp / f"out-t{i}"
            dest.mkdir()
            assert sorted(unpack_files(r.outputs, dest)) == ["out.txt", "stderr", "stdout"]
            assert (dest / "out.txt").read_text() == f"HELLO {i}\n"
        bad = done["bad"]
        assert bad.exit_code == 7 and bad.stderr == b"broken\n" and bad.error == ""
        assert project.waiting == 0 and project.running == 0
    finally:
        bed.client.detach(project.master_url)
        project.stop()
    assert project.master_url not in bed.client.project_urls()


def test_a_tampered_executable_is_refused_and_the_result_fails(bed: Bed) -> None:
    key = CodeSignKey.generate()
    (exe, main), bundle = app_files(key, b"")
    evil = exe.data + b"\n# tampered\n"
    forged = StoredFile(exe.ref.__class__(
        name=exe.ref.name.replace("bjg_wrapper", "bjg_wrapper_evil"), nbytes=len(evil),
        md5=__import__("hashlib").md5(evil).hexdigest(), signature=exe.ref.signature,
        executable=True,
    ), evil)  # fmt: skip
    # The client serves one pending project per 5 s poll, in attach order: a neighbour with a
    # short next_rpc_delay would starve the project under test (see docs/backend-boinc.md).
    good, good_results = serve(bed, "keeper", rpc_delay=600)
    project, results = serve(bed, "evil", key=key, files=((forged, main), bundle))
    try:
        # A second, healthy project stays attached throughout: detaching one leaves the other.
        bed.client.attach(good.master_url, good.authenticator, "keeper")
        project.submit(task="t", attempt=1, command="echo should not run")
        bed.client.attach(project.master_url, project.authenticator, "evil")
        (r,) = collect(bed, project, results, 1).values()
        assert r.exit_code is None
        assert "RSA key check failed" in r.error or "signature" in r.error, r.error
        assert r.error in r.stderr.decode()
        dest = bed.tmp / "out-evil"
        dest.mkdir()
        unpack_files(r.outputs, dest)
        assert r.error in (dest / "stderr").read_text()
        bed.client.detach(project.master_url)
        urls = bed.client.project_urls()
        assert project.master_url not in urls and good.master_url in urls
    finally:
        for p in (project, good):
            if p.master_url in bed.client.project_urls():
                bed.client.detach(p.master_url)
            p.stop()
    assert bed.client.project_urls() == []
    assert good_results.empty()
