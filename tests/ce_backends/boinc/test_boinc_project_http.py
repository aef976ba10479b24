"""The project's HTTP endpoints on loopback: master page, downloads, uploads, refusals.

Client compatibility is proven against the real boinc client (test_boinc_real_client.py);
these pin the server-side rules: what is served, what uploads are accepted.
"""

from __future__ import annotations

import hashlib
import http.client
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bonjourgrid.ce_backends.boinc.issuer import IssuerConfig
from bonjourgrid.ce_backends.boinc.project import Finished, Project, ProjectConfig
from bonjourgrid.ce_backends.boinc.signing import CodeSignKey

KEY = CodeSignKey.generate()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    done: list[Finished] = []
    p = Project(app_id="a1", key=KEY, bundle=b"bundle", root=tmp_path, on_result=done.append,
                config=ProjectConfig(next_rpc_delay=3))  # fmt: skip
    with p:
        yield p


def call(
    p: Project, method: str, path: str, body: bytes = b"", **headers: str
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(p.address, p.port, timeout=5)
    try:
        conn.request(method, p.base_path + path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def request(p: Project, auth: str) -> bytes:
    return f"""<scheduler_request><authenticator>{auth}</authenticator><hostid>0</hostid>
<cpu_req_secs>1</cpu_req_secs><platform_name>x86_64-pc-linux-gnu</platform_name>
<host_info><host_cpid>c</host_cpid><domain_name>h9</domain_name><p_ncpus>1</p_ncpus>
<m_nbytes>1e9</m_nbytes></host_info><other_results></other_results></scheduler_request>""".encode()


def test_master_page_names_the_scheduler_both_ways(project: Project) -> None:
    status, body = call(project, "GET", "")
    sched = project.scheduler_url
    assert status == 200
    assert f'<link rel="boinc_scheduler" href="{sched}">'.encode() in body
    assert f"<scheduler>{sched}</scheduler>".encode() in body


def test_scheduler_gives_work_only_to_the_projects_account(project: Project) -> None:
    project.submit(task="t", attempt=1, command="true")
    status, body = call(project, "POST", "cgi", request(project, "stranger"))
    assert status == 200 and b"<result>" not in body and b"unknown account" in body
    status, body = call(project, "POST", "cgi", request(project, project.authenticator))
    assert status == 200 and b"<result>" in body and b"<hostid>1</hostid>" in body
    assert b"<next_rpc_delay>3</next_rpc_delay>" in body
    assert call(project, "POST", "cgi", b"junk")[0] == 400


def test_downloads_serve_issued_files_with_ranges(project: Project) -> None:
    project.submit(task="t", attempt=1, command="true")
    _, body = call(project, "POST", "cgi", request(project, project.authenticator))
    name = body.split(b"<name>bjg_app_")[1].split(b"</name>")[0].decode()
    path = f"download/bjg_app_{name}"
    assert call(project, "GET", path) == (200, b"bundle")
    assert call(project, "GET", path, Range="bytes=3-") == (206, b"dle")
    assert call(project, "GET", "download/../../etc/passwd")[0] == 404
    assert call(project, "GET", "download/nothing")[0] == 404


def upload(
    project: Project,
    name: str,
    data: bytes,
    offset: int = 0,
    nbytes: int | None = None,
    signature: str = "",
) -> bytes:
    """An upload request as boinc-client 7.20 writes it (file_xfer.cpp ``init_upload``)."""
    whole = b"x" * offset + data
    head = f"""<data_server_request><core_client_major_version>7</core_client_major_version>
<file_upload><file_info><name>{name}</name><xml_signature>
{signature}
</xml_signature><max_nbytes>1000000</max_nbytes></file_info>
<nbytes>{len(whole) if nbytes is None else nbytes}</nbytes>
<md5_cksum>{hashlib.md5(whole).hexdigest()}</md5_cksum>
<offset>{offset}</offset><data>
"""
    return call(project, "POST", "file_upload_handler", head.encode() + data)[1]


def issued_output(reply: bytes) -> tuple[str, str]:
    """(output file name, its xml_signature) from a scheduler reply with one result."""
    m = re.search(
        rb"<name>(\S+_out)</name>\s*<url>[^<]*file_upload_handler</url>.*?"
        rb"<xml_signature>\s*(\S+)\s*</xml_signature>",
        reply,
        re.S,
    )
    assert m, reply
    return m.group(1).decode(), m.group(2).decode()


def test_uploads_accepted_only_for_live_results_with_their_signature(project: Project) -> None:
    assert b"<status>-1</status>" in upload(project, "nobody_out", b"abc")
    project.submit(task="t", attempt=1, command="true")
    _, body = call(project, "POST", "cgi", request(project, project.authenticator))
    name, sig = issued_output(body)
    assert re.fullmatch(r"bjg1-[0-9a-f]{16}_t_1_out", name), name  # an unguessable part
    # The right name without (or with another) signature writes nothing.
    assert b"<status>-1</status>" in upload(project, name, b"xxx", nbytes=5)
    assert b"<status>-1</status>" in upload(project, name, b"xxx", nbytes=5, signature="0" * 64)
    assert list((project.root / "upload").iterdir()) == []
    assert b"<status>0</status>" in upload(project, name, b"xxx", nbytes=5, signature=sig)
    size_query = f"<data_server_request><get_file_size>{name}</get_file_size></data_server_request>"
    _, reply = call(project, "POST", "file_upload_handler", size_query.encode())
    assert b"<file_size>3</file_size>" in reply
    # Resume at an offset; an offset past the end is a transient error (the client retries).
    assert b"<status>1</status>" in upload(project, name, b"", offset=10, signature=sig)
    assert b"<status>0</status>" in upload(project, name, b"yz", offset=3, signature=sig)
    committed = project.root / "upload" / name
    assert committed.read_bytes() == b"xxxyz"
    # Once committed, another upload of the name is answered ok and writes nothing.
    assert b"<status>0</status>" in upload(project, name, b"evil!", signature=sig)
    assert committed.read_bytes() == b"xxxyz"


def test_an_upload_over_max_nbytes_is_refused(tmp_path: Path) -> None:
    small = ProjectConfig(issuer=IssuerConfig(max_output_bytes=100))
    with Project(app_id="a1", key=KEY, bundle=b"", root=tmp_path, on_result=lambda f: None,
                 config=small) as p:  # fmt: skip
        p.submit(task="t", attempt=1, command="true")
        _, body = call(p, "POST", "cgi", request(p, p.authenticator))
        name, sig = issued_output(body)
        assert b"<max_nbytes>100</max_nbytes>" in body
        assert b"<status>-1</status>" in upload(p, name, b"y" * 101, signature=sig)
        assert b"<status>0</status>" in upload(p, name, b"y" * 100, signature=sig)


def test_each_worker_has_its_own_account_and_requests_name_its_node(project: Project) -> None:
    auth = project.add_account("node-7")
    assert project.add_account("node-7") == auth != project.add_account("node-8")
    assert auth != project.authenticator
    project.submit(task="t", attempt=1, command="true")
    assert call(project, "GET", "work") == (200, b"waiting 1\n")
    _, body = call(project, "POST", "cgi", request(project, auth))
    assert b"<result>" in body
    assert call(project, "GET", "work") == (200, b"waiting 0\n")
    assert project.attempts() == [("t", 1)]
    project.host_lost("node-7")  # known by its node id, not its host name (h9)
    assert project.attempts() == []
