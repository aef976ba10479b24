"""The BOINC scheduler RPC, sans I/O: read a ``<scheduler_request>``, write the reply.

Theory of operation: a BOINC client POSTs one ``<scheduler_request>`` to the project's
scheduler URL; it reports finished results (``<result>``), lists the ones it still holds
(``<other_results>``) and asks for work (``cpu_req_secs``/``cpu_req_instances``). The reply
carries the project's code-signing key, the app and its signed app-version files, workunits
with their input files, results with deadlines and output (upload) files, acks for the
reported results, aborts, and ``next_rpc_delay`` (the client comes back within that many
seconds even when it backs off work fetch). Element names and what the client does with them
are in ``docs/backend-boinc.md`` and BOINC ``client/scheduler_op.cpp``/``client_types.cpp``.
This module only converts; what to send is decided by ``issuer.py``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

SCHEDULER_VERSION = 720
"""Informative only; the 7.20 clients we test against."""

RESULT_FILES_UPLOADED = 5
"""BOINC ``RESULT_FILES_UPLOADED``: the result ran and its outputs are on the server."""
RESULT_ABORTED = 6
EXIT_ABORTED_VIA_GUI = 203
"""BOINC ``RESULT_ABORTED`` with ``EXIT_ABORTED_VIA_GUI``: the volunteer's side aborted it
(bjgrid gives work back so when its owner needs the machine: worker.py)."""


class RequestError(ValueError):
    """The body is not a scheduler request we can read."""


@dataclass(frozen=True)
class ReportedResult:
    """One ``<result>`` a client reports: finished (``state`` 5) or failed (exit_status != 0)."""

    name: str
    exit_status: int
    state: int
    elapsed: float
    stderr_out: str = ""
    """The client's ``<stderr_out>`` text: the app's stderr tail and the client's error."""

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and self.state == RESULT_FILES_UPLOADED

    @property
    def given_back(self) -> bool:
        """Aborted on the volunteer (its owner needed the machine), not failed by the task."""
        return self.state == RESULT_ABORTED and self.exit_status == EXIT_ABORTED_VIA_GUI

    @property
    def reason(self) -> str:
        """The client's own words for a failure (``error_code``/``error_message``)."""
        code = _between(self.stderr_out, "error_code")
        message = _between(self.stderr_out, "error_message")
        parts = [p for p in (code, message) if p]
        if parts:
            return ": ".join(parts)
        return f"exit status {self.exit_status}" if self.exit_status else ""


@dataclass(frozen=True)
class SchedulerRequest:
    authenticator: str
    hostid: int
    rpc_seqno: int
    platforms: tuple[str, ...]
    """``platform_name`` first, then each ``alt_platform``."""
    host_cpid: str
    domain_name: str
    ncpus: int
    memory_bytes: float
    cpu_req_secs: float
    cpu_req_instances: float
    work_req_seconds: float
    has_code_sign_key: bool
    reported: tuple[ReportedResult, ...] = ()
    other_results: tuple[str, ...] = ()

    @property
    def wants_work(self) -> bool:
        return self.cpu_req_secs > 0 or self.cpu_req_instances > 0 or self.work_req_seconds > 0


_CDATA = re.compile(r"<!\[CDATA\[.*?\]\]>", re.S)
_BARE_AMP = re.compile(r"&(?!(?:[A-Za-z]+|#[0-9]+|#x[0-9A-Fa-f]+);)")


def parse_request(body: bytes) -> SchedulerRequest:
    """Read a ``<scheduler_request>`` (the client sends no XML declaration, and no DTD: one
    is refused, so no entity is ever expanded)."""
    text = body.decode("utf-8", "replace")
    start = text.find("<scheduler_request")
    if start < 0:
        raise RequestError("no <scheduler_request>")
    text = text[start:]
    if "<!DOCTYPE" in _CDATA.sub("", text).upper():
        raise RequestError("a DTD in a scheduler request")
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        try:  # a host description with a bare '&' (CPU model, OS name) is the usual culprit
            root = ET.fromstring(_BARE_AMP.sub("&amp;", text))
        except ET.ParseError as exc:
            raise RequestError(f"unreadable scheduler request: {exc}") from None
    host = root.find("host_info")
    platforms = [_text(root, "platform_name")]
    platforms += [(e.text or "").strip() for e in root.iter("alt_platform")]
    platforms += [(e.text or "").strip() for e in root.findall("alt_platform/name")]
    reported = tuple(_reported(e) for e in root.findall("result"))
    other = tuple(_text(e, "name") for e in root.findall("other_results/other_result"))
    return SchedulerRequest(
        authenticator=_text(root, "authenticator"),
        hostid=_int(_text(root, "hostid")),
        rpc_seqno=_int(_text(root, "rpc_seqno")),
        platforms=tuple(dict.fromkeys(p for p in platforms if p)),
        host_cpid=_text(host, "host_cpid"),
        domain_name=_text(host, "domain_name"),
        ncpus=max(1, _int(_text(host, "p_ncpus"))),
        memory_bytes=_float(_text(host, "m_nbytes")),
        cpu_req_secs=_float(_text(root, "cpu_req_secs")),
        cpu_req_instances=_float(_text(root, "cpu_req_instances")),
        work_req_seconds=_float(_text(root, "work_req_seconds")),
        has_code_sign_key=bool(_text(root, "code_sign_key")),
        reported=reported,
        other_results=tuple(n for n in other if n),
    )


def _reported(e: ET.Element) -> ReportedResult:
    stderr = e.find("stderr_out")
    return ReportedResult(
        name=_text(e, "name"),
        exit_status=_int(_text(e, "exit_status")),
        state=_int(_text(e, "state")),
        elapsed=_float(_text(e, "final_elapsed_time")),
        stderr_out="" if stderr is None else "".join(stderr.itertext()).strip(),
    )


def _text(e: ET.Element | None, tag: str) -> str:
    if e is None:
        return ""
    found = e.find(tag)
    return "" if found is None else (found.text or "").strip()


def _int(s: str) -> int:
    try:
        return int(float(s)) if s else 0
    except ValueError:
        return 0


def _float(s: str) -> float:
    try:
        return float(s) if s else 0.0
    except ValueError:
        return 0.0


def _between(text: str, tag: str) -> str:
    m = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.S)
    return m.group(1).strip() if m else ""


# --- the reply ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileRef:
    """A file served for download: its physical name, size, MD5 and (app files) signature."""

    name: str
    nbytes: int
    md5: str
    signature: str | None = None
    executable: bool = False


@dataclass(frozen=True)
class Release:
    """The app as the client sees it: one app version whose first file is the main program.

    ``files`` pairs each file with its open name in the slot (None for the main program,
    which the client runs in place). Non-main files use ``<copy_file/>``.
    """

    app_name: str
    version_num: int
    files: tuple[tuple[FileRef, str | None], ...]
    flops: float = 1e9


@dataclass(frozen=True)
class Assignment:
    """One result sent to a client, with its workunit, inputs and output file."""

    result: str
    workunit: str
    inputs: tuple[tuple[FileRef, str], ...]
    """(file, open name) pairs, copied into the slot."""
    output: str
    output_open_name: str
    max_output_bytes: int
    deadline: float
    """``report_deadline``, Unix time."""
    fpops_bound: float
    """The client aborts the task after ``fpops_bound / flops`` seconds of running."""
    memory_bound: float
    """Bytes; the client aborts a task whose working set grows past it."""
    disk_bound: float
    cpus: int = 1
    command_line: str = ""
    upload_signature: str = ""
    """The output file's ``<xml_signature>``: the client sends it back with the upload, which
    the project accepts only with the signature it made (``uploads.py``)."""


@dataclass(frozen=True)
class Reply:
    project_name: str
    master_url: str
    download_url: str
    """Prefix of every download URL (ends with ``/``)."""
    upload_url: str
    """Must contain ``file_upload_handler`` (that is how the client tells uploads)."""
    code_sign_key: str
    code_sign_key_signature: str
    next_rpc_delay: float
    platform: str
    hostid: int | None = None
    """Only in answer to ``hostid`` 0: the client regenerates its CPID otherwise."""
    release: Release | None = None
    assignments: tuple[Assignment, ...] = ()
    acks: tuple[str, ...] = ()
    aborts: tuple[str, ...] = ()
    messages: tuple[str, ...] = field(default=())
    request_delay: float | None = None


def plan_class(cpus: int) -> str:
    """The plan class of an app version using ``cpus`` CPUs ('' for one)."""
    return "" if cpus <= 1 else f"mt{cpus}"


def build_reply(r: Reply) -> bytes:
    """The ``<scheduler_reply>`` document."""
    out = ["<scheduler_reply>"]
    add = out.append
    add(f"<scheduler_version>{SCHEDULER_VERSION}</scheduler_version>")
    add(_el("master_url", r.master_url))
    add(_el("project_name", r.project_name))
    if r.hostid is not None:
        add(f"<hostid>{r.hostid}</hostid>")
    add(f"<next_rpc_delay>{r.next_rpc_delay:g}</next_rpc_delay>")
    if r.request_delay is not None:
        add(f"<request_delay>{r.request_delay:g}</request_delay>")
    add(f"<code_sign_key>\n{r.code_sign_key}</code_sign_key>")
    add(f"<code_sign_key_signature>\n{r.code_sign_key_signature}</code_sign_key_signature>")
    if r.release is not None and r.assignments:
        add(f"<app>{_el('name', r.release.app_name)}</app>")
        for f, _ in r.release.files:
            add(_file_info(f, r.download_url))
        for cpus in sorted({a.cpus for a in r.assignments}):
            add(_app_version(r.release, r.platform, cpus))
        for a in r.assignments:
            add(_assignment(a, r.release, r.platform, r.download_url, r.upload_url))
    for name in r.acks:
        add(f"<result_ack>{_el('name', name)}</result_ack>")
    for name in r.aborts:
        add(f"<result_abort>{_el('name', name)}</result_abort>")
    for text in r.messages:
        add(f'<message priority="low">{escape(text)}</message>')
    add("</scheduler_reply>\n")
    return "\n".join(out).encode()


def _el(tag: str, value: str) -> str:
    return f"<{tag}>{escape(value)}</{tag}>"


def _file_info(f: FileRef, download_url: str) -> str:
    parts = [
        "<file_info>",
        _el("name", f.name),
        _el("url", download_url + f.name),
        f"<nbytes>{f.nbytes}</nbytes>",
        _el("md5_cksum", f.md5),
    ]
    if f.executable:
        parts.append("<executable/>")
    if f.signature is not None:
        parts.append(f"<file_signature>\n{f.signature}</file_signature>")
    parts.append("</file_info>")
    return "\n".join(parts)


def _app_version(rel: Release, platform: str, cpus: int) -> str:
    parts = [
        "<app_version>",
        _el("app_name", rel.app_name),
        f"<version_num>{rel.version_num}</version_num>",
        _el("platform", platform),
        _el("plan_class", plan_class(cpus)),
        f"<avg_ncpus>{cpus}</avg_ncpus>",
        f"<flops>{rel.flops:g}</flops>",
    ]
    for f, open_name in rel.files:
        if open_name is None:
            parts.append(f"<file_ref>{_el('file_name', f.name)}<main_program/></file_ref>")
        else:
            parts.append(
                f"<file_ref>{_el('file_name', f.name)}{_el('open_name', open_name)}"
                "<copy_file/></file_ref>"
            )
    parts.append("</app_version>")
    return "\n".join(parts)


def _assignment(a: Assignment, rel: Release, platform: str, download: str, upload: str) -> str:
    parts = [_file_info(f, download) for f, _ in a.inputs]
    parts += [
        "<workunit>",
        _el("name", a.workunit),
        _el("app_name", rel.app_name),
        f"<version_num>{rel.version_num}</version_num>",
        _el("command_line", a.command_line),
        f"<rsc_fpops_est>{rel.flops:g}</rsc_fpops_est>",
        f"<rsc_fpops_bound>{a.fpops_bound:g}</rsc_fpops_bound>",
        f"<rsc_memory_bound>{a.memory_bound:.0f}</rsc_memory_bound>",
        f"<rsc_disk_bound>{a.disk_bound:.0f}</rsc_disk_bound>",
    ]
    for f, open_name in a.inputs:
        parts.append(
            f"<file_ref>{_el('file_name', f.name)}{_el('open_name', open_name)}"
            "<copy_file/></file_ref>"
        )
    parts += [
        "</workunit>",
        "<file_info>",
        _el("name", a.output),
        _el("url", upload),
        f"<max_nbytes>{a.max_output_bytes}</max_nbytes>",
        # The client reads this element line by line and echoes its content in the upload.
        *(
            (f"<xml_signature>\n{escape(a.upload_signature)}\n</xml_signature>",)
            if a.upload_signature
            else ()
        ),
        "</file_info>",
        "<result>",
        _el("name", a.result),
        _el("wu_name", a.workunit),
        f"<report_deadline>{a.deadline:.0f}</report_deadline>",
        _el("platform", platform),
        _el("plan_class", plan_class(a.cpus)),
        f"<version_num>{rel.version_num}</version_num>",
        "<report_immediately/>",
        f"<file_ref>{_el('file_name', a.output)}{_el('open_name', a.output_open_name)}"
        "<copy_file/></file_ref>",
        "</result>",
    ]
    return "\n".join(parts)


__all__ = [
    "RESULT_FILES_UPLOADED",
    "Assignment",
    "FileRef",
    "Release",
    "Reply",
    "ReportedResult",
    "RequestError",
    "SchedulerRequest",
    "build_reply",
    "parse_request",
    "plan_class",
]
