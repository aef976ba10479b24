"""Uploads to ``file_upload_handler``: which ones are accepted, and how they reach the disk.

Theory of operation: a BOINC upload request carries no authenticator (``client/file_xfer.cpp``
``init_upload``: the header is ``<file_info>`` with the file's ``<name>``, its
``<xml_signature>`` and ``<max_nbytes>``, then ``nbytes``, ``md5_cksum``, ``offset`` and
``<data>``, then the raw bytes). What binds an upload to the client it was issued to is what
only that client was told, in the scheduler reply to its own authenticated request:

* the output file's name, which has a random part (``issuer.random_token``);
* the ``<xml_signature>`` of that file's ``<file_info>``: HMAC-SHA256 of the name and
  ``max_nbytes`` under a secret of this project (a real BOINC server signs the same element
  with its upload key for the same purpose; the client stores it and echoes it verbatim).

An upload is accepted only for the output file of a live result (issued, not yet reported,
failed or expired), with the project's signature for it, within its ``max_nbytes``, and only
until it is *committed* (complete, MD5 as declared: ``<name>.part`` renamed to ``<name>``).
Later uploads of a committed file are answered "ok" and write nothing (the client may have
missed the first reply); two uploads of one file at once: the second is told to retry.
Anything refused is answered with the same "unknown file", whatever the reason, so a guesser
learns nothing. Replies are BOINC's: status 0 ok, -1 permanent error, 1 transient (retried).

File I/O is here; the HTTP side (``http_server.py``) streams the body into an ``UploadWriter``
and never holds a whole upload in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from bonjourgrid.safepath import UnsafePath, under

DATA_TAG = b"<data>\n"
"""Ends the XML header of an upload; the raw bytes follow."""
PART_SUFFIX = ".part"


@dataclass(frozen=True)
class SizeQuery:
    """``<get_file_size>``: how much of ``name`` the server has (for resumed uploads)."""

    name: str


@dataclass(frozen=True)
class UploadHeader:
    name: str
    signature: str
    nbytes: int
    """The whole file's size as the client declares it."""
    md5: str
    offset: int
    """Where this request's bytes start in the file."""


class HeaderError(ValueError):
    """Not an upload request we can read."""


def parse_header(head: bytes) -> SizeQuery | UploadHeader:
    """The XML before ``<data>`` (or a whole size query)."""
    text = head.decode("utf-8", "replace")
    query = _tag(text, "get_file_size")
    if query:
        return SizeQuery(query)
    name = _tag(text, "name")
    if not name:
        raise HeaderError("no file name")
    try:
        nbytes = int(float(_tag(text, "nbytes") or 0))
        offset = int(float(_tag(text, "offset") or 0))
    except (ValueError, OverflowError):
        raise HeaderError("unreadable size or offset") from None
    if nbytes < 0 or offset < 0:
        raise HeaderError("negative size or offset")
    return UploadHeader(name, _tag(text, "xml_signature"), nbytes, _tag(text, "md5_cksum"), offset)


def reply(status: int, message: str = "", size: int | None = None) -> bytes:
    """A ``<data_server_reply>``."""
    parts = [f"<data_server_reply>\n<status>{status}</status>"]
    if message:
        parts.append(f"<message>{escape(message)}</message>")
    if size is not None:
        parts.append(f"<file_size>{size}</file_size>")
    parts.append("</data_server_reply>\n")
    return "\n".join(parts).encode()


REFUSED = reply(-1, "unknown file")
"""The one answer to every refused upload or size query (no hint which check failed)."""


class UploadWriter:
    """One accepted upload request: ``write`` its bytes, then ``finish`` (or ``abort``)."""

    def __init__(self, store: UploadStore, head: UploadHeader, length: int, part: Path) -> None:
        self._store = store
        self.head = head
        self.length = length
        """Bytes this request brings (the body after ``<data>``)."""
        self.written = 0
        self._part = part
        self._file = open(part, "r+b" if part.exists() else "wb")  # noqa: SIM115 (closed in finish)
        self._file.truncate(head.offset)
        self._file.seek(head.offset)

    def write(self, chunk: bytes) -> None:
        room = self.length - self.written
        if len(chunk) > room:
            chunk = chunk[:room]
        self._file.write(chunk)
        self.written += len(chunk)

    def finish(self) -> bytes:
        """Close; commit when the file is complete and its MD5 is the declared one."""
        try:
            self._file.close()
            head = self.head
            if self.written < self.length:  # the body was cut short: keep it, resume later
                return reply(1, "upload cut short")
            end = head.offset + self.written
            if end < head.nbytes:
                return reply(0)  # one piece of a file sent in several requests
            digest = _md5(self._part)
            if head.md5 and not hmac.compare_digest(digest, head.md5.lower()):
                self._part.unlink(missing_ok=True)
                return reply(1, "checksum mismatch")
            os.replace(self._part, self._store.path(head.name))
            return reply(0)
        finally:
            self._store._done(self.head.name)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self._store._done(self.head.name)


class UploadStore:
    """The project's upload directory and the rules above. Thread-safe.

    ``max_nbytes_of(name)``: the ``max_nbytes`` of the live result output ``name``, or None
    when no live result has that output (the issuer answers, under the project's lock).
    """

    def __init__(self, root: Path, max_nbytes_of: Callable[[str], int | None]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._max_nbytes_of = max_nbytes_of
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._busy: set[str] = set()

    def sign(self, name: str, max_nbytes: int) -> str:
        """The ``<xml_signature>`` sent with output file ``name``."""
        msg = f"{name}\n{max_nbytes}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def path(self, name: str) -> Path:
        """Where a committed upload is (``name`` is an issued, hence safe, name)."""
        return under(self.root, name)

    def _part(self, name: str) -> Path:
        return under(self.root, name + PART_SUFFIX)

    def _allowed(self, name: str, signature: str | None) -> int | None:
        """max_nbytes when ``name`` may be uploaded (with ``signature``, unless None)."""
        try:
            under(self.root, name + PART_SUFFIX)
        except UnsafePath:
            return None
        limit = self._max_nbytes_of(name)
        if limit is None:
            return None
        if signature is not None and not hmac.compare_digest(signature, self.sign(name, limit)):
            return None
        return limit

    def size(self, query: SizeQuery) -> bytes:
        """Answer ``get_file_size`` (only for live outputs)."""
        if self._allowed(query.name, None) is None:
            return REFUSED
        for path in (self.path(query.name), self._part(query.name)):
            with contextlib.suppress(FileNotFoundError):
                return reply(0, size=path.stat().st_size)
        return reply(0, size=0)

    def open(self, head: UploadHeader, length: int) -> UploadWriter | bytes:
        """A writer for this request's ``length`` bytes, or the reply refusing it."""
        limit = self._allowed(head.name, head.signature)
        if limit is None:
            return REFUSED
        if head.nbytes > limit or head.offset + length > head.nbytes:
            return reply(-1, "file too large")
        with self._lock:
            if head.name in self._busy:
                return reply(1, "an upload of this file is in progress")
            self._busy.add(head.name)
        try:
            if self.path(head.name).exists():
                self._done(head.name)
                return reply(0)  # committed already: nothing is written again
            part = self._part(head.name)
            have = part.stat().st_size if part.exists() else 0
            if head.offset > have:
                self._done(head.name)
                return reply(1, "offset past the end of the file")
            return UploadWriter(self, head, length, part)
        except OSError:
            self._done(head.name)
            return reply(1, "cannot store the file now")

    def discard(self, name: str) -> None:
        """The result is over: remove its upload, committed or partial."""
        for path in (self.path(name), self._part(name)):
            with contextlib.suppress(OSError):
                path.unlink()

    def _done(self, name: str) -> None:
        with self._lock:
            self._busy.discard(name)


def _tag(text: str, tag: str) -> str:
    m = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.S)
    return m.group(1).strip() if m else ""


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


__all__ = [
    "DATA_TAG",
    "REFUSED",
    "HeaderError",
    "SizeQuery",
    "UploadHeader",
    "UploadStore",
    "UploadWriter",
    "parse_header",
    "reply",
]
