"""Result manifests (coordinator/manifest.py): an answer whose table, outputs and manifest do
not agree is caught, whichever part a holder changed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bonjourgrid.app.bundle import pack_files
from bonjourgrid.coordinator.manifest import (
    ManifestError,
    check_answer,
    digests,
    make_manifest,
    manifest_signature_problem,
    sign_manifest,
)

APP = "a1b2c3d4"


def _tree(root: Path, files: dict[str, bytes]) -> bytes:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return pack_files(root, sorted({n.split("/")[0] for n in files}))


def _results(**over: object) -> dict[str, object]:
    rows = [
        {"id": "t1", "state": "done", "exit_code": 0, "attempts": 1, "worker": "h1"},
        {"id": "t2", "state": "failed", "exit_code": 3, "attempts": 2, "worker": "h2"},
    ]
    for row in rows:
        row.update(over.get(str(row["id"]), {}))  # type: ignore[call-overload]
    return {"app": APP, "name": "demo", "tasks": rows}


@pytest.fixture
def answer(tmp_path: Path) -> tuple[dict[str, object], bytes, str]:
    outputs = _tree(
        tmp_path / "a",
        {"t1/out.txt": b"42\n", "t1/stdout": b"", "t2/stderr": b"boom\n", "t2/d/x": b"x"},
    )
    results = _results()
    doc = make_manifest(
        APP, 3, complete=True, outcome="finished", results=results, files=digests(outputs)
    )
    return results, outputs, doc


def _check(results: dict[str, object], outputs: bytes, doc: str, **kw: object) -> list[str]:
    args: dict[str, object] = {"complete": True, "outcome": "finished"}
    args.update(kw)
    return check_answer(APP, doc, results=results, files=digests(outputs), **args)  # type: ignore[arg-type]


def test_a_consistent_answer_passes_and_lists_each_files_hash(
    answer: tuple[dict[str, object], bytes, str],
) -> None:
    results, outputs, doc = answer
    assert _check(results, outputs, doc) == []
    m = json.loads(doc)
    assert (m["app"], m["term"], m["complete"]) == (APP, 3, True)
    assert m["tasks"]["t1"]["files"]["out.txt"] == hashlib.sha256(b"42\n").hexdigest()
    assert m["tasks"]["t2"] | {"files": None} == {
        "state": "failed", "attempts": 2, "exit_code": 3, "files": None,
    }  # fmt: skip


def test_a_changed_output_is_caught(
    answer: tuple[dict[str, object], bytes, str], tmp_path: Path
) -> None:
    results, _, doc = answer
    forged = _tree(
        tmp_path / "b",
        {"t1/out.txt": b"41\n", "t1/stdout": b"", "t2/stderr": b"boom\n", "t2/d/x": b"x"},
    )
    assert _check(results, forged, doc) == ["t1/out.txt does not hash to its manifest entry"]


def test_missing_and_extra_outputs_are_caught(
    answer: tuple[dict[str, object], bytes, str], tmp_path: Path
) -> None:
    results, _, doc = answer
    other = _tree(
        tmp_path / "b",
        {"t1/out.txt": b"42\n", "t1/stdout": b"", "t2/stderr": b"boom\n", "t2/evil": b"e"},
    )
    problems = _check(results, other, doc)
    assert "t2/d/x is in the manifest but not in the outputs" in problems
    assert "t2/evil is in the outputs but not in the manifest" in problems


def test_a_table_that_disagrees_with_the_manifest_is_caught(
    answer: tuple[dict[str, object], bytes, str],
) -> None:
    results, outputs, doc = answer
    lied = _results(t2={"state": "done", "exit_code": 0})
    problems = _check(lied, outputs, doc)
    assert any("task t2: state" in p for p in problems), problems
    assert any("task t2: exit_code" in p for p in problems), problems
    assert _check(results, outputs, doc, complete=False) != []
    assert _check(results, outputs, doc, outcome="cancelled") != []


def test_a_task_dropped_from_the_table_is_caught(
    answer: tuple[dict[str, object], bytes, str],
) -> None:
    results, outputs, doc = answer
    fewer = dict(results, tasks=[t for t in results["tasks"] if t["id"] == "t1"])  # type: ignore[attr-defined]
    assert "task t2 of the manifest is not in results" in _check(fewer, outputs, doc)


def test_an_answer_for_another_app_is_caught(
    answer: tuple[dict[str, object], bytes, str],
) -> None:
    results, outputs, _ = answer
    doc = make_manifest(
        "ffff0000", 1, complete=True, outcome="finished", results=results, files=digests(outputs)
    )
    assert any("for app" in p for p in _check(results, outputs, doc))


@pytest.mark.parametrize("doc", ["", "{", "[]", '{"v":9,"tasks":{}}', '{"v":1,"tasks":{"t":1}}'])
def test_missing_or_malformed_manifests_are_caught(
    answer: tuple[dict[str, object], bytes, str], doc: str
) -> None:
    results, outputs, _ = answer
    assert _check(results, outputs, doc) != []


def test_outputs_holding_a_link_are_unreadable() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("t1/key")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/shadow"
        tar.addfile(info)
    with pytest.raises(ManifestError, match="links"):
        digests(buf.getvalue())


def test_no_outputs_is_an_empty_digest() -> None:
    assert digests(b"") == {}


def _ce() -> tuple[bytes, bytes]:
    seed = os.urandom(32)
    pub = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return seed, pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_a_manifest_signed_by_the_ce_key_verifies_and_nothing_else_does(
    answer: tuple[dict[str, object], bytes, str],
) -> None:
    _, _, doc = answer
    seed, pub = _ce()
    other_seed, _ = _ce()
    sig = sign_manifest(seed, doc)
    assert manifest_signature_problem(pub, doc, sig) is None
    assert manifest_signature_problem(pub, doc, "") is not None
    assert manifest_signature_problem(pub, doc, sign_manifest(other_seed, doc)) is not None
    assert manifest_signature_problem(pub, doc.replace('"term":3', '"term":9'), sig) is not None
    assert manifest_signature_problem(pub, doc, "zz") is not None
