"""Scheduler RPC codec: requests as boinc-client 7.20 writes them, replies it can read."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from bonjourgrid.ce_backends.boinc.scheduler import (
    Assignment,
    FileRef,
    Release,
    Reply,
    ReportedResult,
    RequestError,
    build_reply,
    parse_request,
)


def request_xml(
    *,
    hostid: int = 0,
    ncpus: int = 2,
    cpu_req_secs: float = 1.0,
    reported: str = "",
    other: tuple[str, ...] = (),
    key: bool = False,
    os_name: str = "Linux Debian",
) -> bytes:
    others = "".join(f"<other_result><name>{n}</name></other_result>" for n in other)
    return f"""<scheduler_request>
    <authenticator>feedface</authenticator>
    <hostid>{hostid}</hostid>
    <rpc_seqno>3</rpc_seqno>
    <core_client_major_version>7</core_client_major_version>
    <work_req_seconds>{cpu_req_secs:f}</work_req_seconds>
    <cpu_req_secs>{cpu_req_secs:f}</cpu_req_secs>
    <cpu_req_instances>0.000000</cpu_req_instances>
    <platform_name>x86_64-pc-linux-gnu</platform_name>
    <alt_platform>
        <name>i686-pc-linux-gnu</name>
    </alt_platform>
    {"<code_sign_key>1024 ab .</code_sign_key>" if key else ""}
    <host_info>
        <host_cpid>cpid1</host_cpid>
        <domain_name>h2</domain_name>
        <p_ncpus>{ncpus}</p_ncpus>
        <m_nbytes>4000000000.000000</m_nbytes>
        <os_name>{os_name}</os_name>
    </host_info>
    {reported}
    <app_versions> </app_versions>
    <other_results>{others}</other_results>
</scheduler_request>
""".encode()


REPORT_OK = """<result>
    <name>bjg1_t_1</name>
    <final_elapsed_time>2.007364</final_elapsed_time>
    <exit_status>0</exit_status>
    <state>5</state>
<stderr_out>
<core_client_version>7.20.5</core_client_version>
<![CDATA[
<stderr_txt>
</stderr_txt>
]]>
</stderr_out>
</result>"""

REPORT_BADSIG = """<result>
    <name>bjg2_u_1</name>
    <exit_status>-186</exit_status>
    <state>1</state>
<stderr_out>
<core_client_version>7.20.5</core_client_version>
<![CDATA[
<message>
WU download error: couldn't get input files:
<file_xfer_error>
  <file_name>bjg_wrapper_1</file_name>
  <error_code>-120 (RSA key check failed for file)</error_code>
  <error_message>signature verification failed</error_message>
</file_xfer_error>
</message>
]]>
</stderr_out>
</result>"""


def test_first_request_fields() -> None:
    req = parse_request(request_xml())
    assert req.hostid == 0 and req.rpc_seqno == 3 and req.authenticator == "feedface"
    assert req.platforms == ("x86_64-pc-linux-gnu", "i686-pc-linux-gnu")
    assert req.domain_name == "h2" and req.ncpus == 2 and req.host_cpid == "cpid1"
    assert req.wants_work and not req.has_code_sign_key
    assert req.reported == () and req.other_results == ()


@pytest.mark.parametrize(
    ("report", "ok", "reason"),
    [
        (REPORT_OK, True, ""),
        (REPORT_BADSIG, False,
         "-120 (RSA key check failed for file): signature verification failed"),
        ("<result><name>x</name><exit_status>3</exit_status><state>3</state></result>", False,
         "exit status 3"),
    ],
)  # fmt: skip
def test_reported_results(report: str, ok: bool, reason: str) -> None:
    req = parse_request(request_xml(hostid=1, reported=report, other=("o1", "o2"), key=True))
    (r,) = req.reported
    assert isinstance(r, ReportedResult)
    assert r.ok is ok and r.reason == reason
    assert req.other_results == ("o1", "o2") and req.has_code_sign_key


def test_no_work_request() -> None:
    assert not parse_request(request_xml(cpu_req_secs=0)).wants_work


def test_tolerates_a_bare_ampersand_in_host_info() -> None:
    assert parse_request(request_xml(os_name="Linux R&D")).domain_name == "h2"


@pytest.mark.parametrize("body", [b"", b"<html/>", b"<scheduler_request><hostid>"])
def test_refuses_what_is_not_a_request(body: bytes) -> None:
    with pytest.raises(RequestError):
        parse_request(body)


def _reply(**kw: object) -> ET.Element:
    exe = FileRef("bjg_wrapper_ab", 10, "m" * 32, signature="00\n.\n", executable=True)
    bundle = FileRef("bjg_app_cd.tar.gz", 20, "n" * 32, signature="11\n.\n")
    base = dict(
        project_name="bjg-app",
        master_url="http://169.254.1.1:4000/bjg/app/",
        download_url="http://169.254.1.1:4000/bjg/app/download/",
        upload_url="http://169.254.1.1:4000/bjg/app/file_upload_handler",
        code_sign_key="1024\nab\n.\n",
        code_sign_key_signature="cd\n.\n",
        next_rpc_delay=5.0,
        platform="x86_64-pc-linux-gnu",
        release=Release("bjgapp", 1, ((exe, None), (bundle, "bjg_app.tar.gz"))),
    )
    base.update(kw)
    return ET.fromstring(build_reply(Reply(**base)))  # type: ignore[arg-type]


def _assignment(name: str, cpus: int = 1) -> Assignment:
    job = FileRef(f"{name}_job", 5, "j" * 32)
    return Assignment(
        result=name, workunit=name, inputs=((job, "bjg_job"),), output=f"{name}_out",
        output_open_name="bjg_out", max_output_bytes=1000, deadline=1700000000.4,
        fpops_bound=1e12, memory_bound=1e8, disk_bound=1e9, cpus=cpus,
        command_line="--attempt 1",
    )  # fmt: skip


def test_reply_without_work_has_no_app_and_no_hostid() -> None:
    root = _reply(acks=("r1",), aborts=("r2",))
    assert root.tag == "scheduler_reply"
    assert root.find("hostid") is None and root.find("app") is None
    assert root.findtext("next_rpc_delay") == "5"
    assert root.findtext("result_ack/name") == "r1"
    assert root.findtext("result_abort/name") == "r2"
    assert "1024" in (root.findtext("code_sign_key") or "")


def test_reply_with_work() -> None:
    root = _reply(hostid=7, assignments=(_assignment("w1"), _assignment("w2", cpus=2)))
    assert root.findtext("hostid") == "7"
    assert root.findtext("app/name") == "bjgapp"
    infos = {fi.findtext("name"): fi for fi in root.findall("file_info")}
    exe = infos["bjg_wrapper_ab"]
    assert exe.find("executable") is not None and exe.findtext("file_signature")
    assert exe.findtext("url") == "http://169.254.1.1:4000/bjg/app/download/bjg_wrapper_ab"
    assert infos["w1_out"].findtext("url", "").endswith("/file_upload_handler")
    versions = root.findall("app_version")
    assert sorted(v.findtext("plan_class") or "" for v in versions) == ["", "mt2"]
    refs = versions[0].findall("file_ref")
    assert refs[0].find("main_program") is not None
    assert (
        refs[1].findtext("open_name") == "bjg_app.tar.gz" and refs[1].find("copy_file") is not None
    )
    (wu1, _) = root.findall("workunit")
    assert wu1.findtext("command_line") == "--attempt 1"
    assert wu1.find("file_ref/copy_file") is not None
    results = root.findall("result")
    assert [r.findtext("name") for r in results] == ["w1", "w2"]
    assert results[0].findtext("report_deadline") == "1700000000"
    assert results[0].find("report_immediately") is not None
    assert results[1].findtext("plan_class") == "mt2"
    assert results[0].findtext("file_ref/open_name") == "bjg_out"


def test_reply_escapes_text() -> None:
    root = _reply(project_name="a<b&c", messages=("x & y",))
    assert root.findtext("project_name") == "a<b&c"
    assert root.findtext("message") == "x & y"
