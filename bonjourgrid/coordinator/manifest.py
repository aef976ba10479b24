"""The result manifest: what a holder of an app says its results are, in a form one can check.

A daemon answering ``FetchApp`` (or its own CLI) sends, beside the results table and the tar of
outputs, a manifest: canonical JSON (sorted keys, no spaces) of ``{"v", "app", "term",
"complete", "outcome", "tasks": {task id: {"state", "attempts", "exit_code", "files":
{path in the task's folder: sha256}}}}``, made from the very table and tar it sends.

``check_answer`` is what ``bjgrid results`` (and the asking daemon, choosing among holders)
runs before believing an answer: the manifest is for the app asked for, agrees with the table
(every task, state, attempt count and exit code; completeness and outcome), and every file of
the tar hashes to its entry, with no file missing or extra. A holder whose answer does not add
up is refused, whatever term it claims.

Signed by the app's CE key (app/ce_key.py: the key allowed to coordinate the app, held by its
coordinator and handed to its replicas; its public half is in the app's signature), over a
domain tag and the manifest's bytes (``sign_manifest``, ``manifest_signature_problem``). An
asker that knows the app's signature refuses an answer whose manifest the CE key did not sign,
so a grid-key holder claiming a high term cannot pass off results of its own. An asker that
does not know it (it never held the app) has only the consistency checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from bonjourgrid import curves
from bonjourgrid.app.bundle import BundleError, unpack_files

VERSION = 1
_DOMAIN = b"bjgrid result manifest v1\0"


class ManifestError(Exception):
    """An answer's outputs cannot be read at all (a bad tar)."""


def digests(outputs: bytes) -> dict[str, str]:
    """Archive name -> sha256 of every regular file in a tar of outputs (links, devices and
    bombs refused by ``unpack_files``'s rules and caps)."""
    if not outputs:
        return {}
    with tempfile.TemporaryDirectory(prefix="bjgrid-manifest-") as tmp:
        try:
            names = unpack_files(outputs, Path(tmp))
        except BundleError as e:
            raise ManifestError(str(e)) from None
        out: dict[str, str] = {}
        for name in names:
            h = hashlib.sha256()
            fd = os.open(os.path.join(tmp, name), os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            out[name] = h.hexdigest()
        return out


def _rows(results: Mapping[str, object]) -> list[Mapping[str, object]]:
    tasks = results.get("tasks")
    if not isinstance(tasks, list):
        return []
    return [t for t in tasks if isinstance(t, Mapping)]


def make_manifest(
    app: str,
    term: int,
    *,
    complete: bool,
    outcome: str,
    results: Mapping[str, object],
    files: Mapping[str, str],
) -> str:
    """The manifest of one answer; ``files`` is ``digests(outputs)``."""
    tasks: dict[str, dict[str, object]] = {}
    for row in _rows(results):
        tasks[str(row.get("id"))] = {
            "state": row.get("state"),
            "attempts": row.get("attempts"),
            "exit_code": row.get("exit_code"),
            "files": {},
        }
    for name, sha in files.items():
        task, _, rel = name.partition("/")
        entry = tasks.setdefault(task, {"state": None, "attempts": None, "exit_code": None})
        entry.setdefault("files", {})[rel] = sha  # type: ignore[index]
    body = {
        "v": VERSION,
        "app": app,
        "term": term,
        "complete": complete,
        "outcome": outcome,
        "tasks": tasks,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def check_answer(
    app: str,
    manifest: str,
    *,
    complete: bool,
    outcome: str,
    results: Mapping[str, object],
    files: Mapping[str, str],
) -> list[str]:
    """What does not add up in an answer (empty: consistent). ``files`` is
    ``digests(outputs)`` of the tar that came with it."""
    if not manifest:
        return ["no result manifest"]
    try:
        m = json.loads(manifest)
    except ValueError:
        return ["the result manifest is not JSON"]
    if not isinstance(m, dict) or m.get("v") != VERSION or not isinstance(m.get("tasks"), dict):
        return ["the result manifest is not a version 1 manifest"]
    problems: list[str] = []
    if m.get("app") != app or results.get("app") != app:
        problems.append(f"the answer is for app {m.get('app')!r}/{results.get('app')!r}")
    if m.get("complete") is not complete or m.get("outcome") != outcome:
        problems.append("completeness or outcome differs from the manifest")
    want: dict[str, dict[str, object]] = m["tasks"]
    rows = {str(r.get("id")): r for r in _rows(results)}
    for tid, row in rows.items():
        entry = want.get(tid)
        if not isinstance(entry, dict):
            problems.append(f"task {tid} is not in the manifest")
            continue
        for k in ("state", "attempts", "exit_code"):
            if entry.get(k) != row.get(k):
                problems.append(f"task {tid}: {k} {row.get(k)!r} != manifest {entry.get(k)!r}")
    listed: dict[str, str] = {}
    for tid, entry in want.items():
        entry_files = entry.get("files") if isinstance(entry, dict) else None
        if not isinstance(entry_files, dict):
            problems.append(f"manifest entry of task {tid} is malformed")
            continue
        if tid not in rows and entry.get("state") is not None:
            problems.append(f"task {tid} of the manifest is not in results")
        for rel, sha in entry_files.items():
            listed[f"{tid}/{rel}"] = str(sha)
    for name in sorted(set(listed) | set(files)):
        if name not in files:
            problems.append(f"{name} is in the manifest but not in the outputs")
        elif name not in listed:
            problems.append(f"{name} is in the outputs but not in the manifest")
        elif files[name] != listed[name]:
            problems.append(f"{name} does not hash to its manifest entry")
    return problems


def sign_manifest(ce_seed: bytes, manifest: str) -> str:
    """The CE key's signature (hex) of ``manifest``; ``ce_seed`` is the private key's seed."""
    return curves.ed25519_sign(ce_seed, _DOMAIN + manifest.encode()).hex()


def manifest_signature_problem(ce_public: bytes, manifest: str, signature: str) -> str | None:
    """Why ``signature`` does not show that the CE key ``ce_public`` signed ``manifest``
    (None: it does)."""
    if not signature:
        return "the result manifest is not signed by the app's CE key"
    try:
        raw = bytes.fromhex(signature)
    except ValueError:
        raw = b""
    if not curves.ed25519_valid(ce_public, raw, _DOMAIN + manifest.encode()):
        return "the result manifest's signature is not by the app's CE key"
    return None
