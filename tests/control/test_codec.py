from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import struct
import typing
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bonjourgrid.control.codec import MAX_JSON_DEPTH, MessageError, Registry
from bonjourgrid.control.messages import (
    CONTROL,
    AppEnded,
    AppQuery,
    AppResults,
    AppState,
    BoincAttach,
    BoincAttached,
    CancelApp,
    CancelTask,
    CondorJoin,
    CondorJoined,
    Error,
    Fenced,
    FetchApp,
    GiveBack,
    Heartbeat,
    HeartbeatAck,
    JournalAck,
    JournalAppend,
    Kind,
    Ping,
    Pong,
    Release,
    ReplicaOpen,
    Replicas,
    Reserve,
    ReserveReply,
    ResultAck,
    RunTask,
    StageAck,
    StageApp,
    TaskResult,
    Vote,
    VoteRequest,
)
from bonjourgrid.ids import NAME_RE, RESERVED_IDS

EXAMPLES: list[object] = [
    Ping(),
    Pong("n1", "pc-12", "worker", "app-1", "n9", 8, 6, 2, ("app-7",), ("embedded", "condor")),
    Pong("n1", "pc-12", "idle", None, None, 4, 4, 4, (), ()),
    Reserve("app-1", "n9", "pc-9", 3, 30.0, "embedded"),
    ReserveReply("app-1", False, "busy with app-0", 0),
    Heartbeat("app-1", 3, 30.5),
    HeartbeatAck("app-1", 3, ("t1", "t2")),
    Release("app-1", 3, "done"),
    StageApp("app-1", 3, "ab" * 32, bytes(range(256)) * 3),
    StageAck("app-1", "ab" * 32, True, ""),
    RunTask(
        "app-1", 3, "t1", 0, ("sh", "-c", "echo é"), {"A": "1"}, 60.0, 2, ("out.txt",), b"", ""
    ),
    RunTask("app-1", 3, "t2", 1, (), {}, None, 1, (), b"\x00tar", "cd" * 32),
    TaskResult("app-1", "t1", 0, 0, 1.25, "", b"\x1f\x8b...", "ef" * 32),
    TaskResult("app-1", "t1", 1, None, 0.0, "timed out", b"", ""),
    AppEnded("app-1", 3, "finished"),
    Error("unknown app"),
    CancelTask("app-1", "t1", 2),
    ResultAck("app-1", "t1", 2),
    ResultAck("app-1", "t1", 2, 3),
    ReplicaOpen(
        "app-1",
        2,
        "node-a",
        "host-a",
        {"name": "x", "tasks": []},
        b"bundle",
        "digest",
        "alice",
        ("node-b", "node-c"),
        {"node-b": "host-b"},
        3,
        '{"k":"cancel","reason":"x"}',
        b"tar",
    ),
    ReplicaOpen(
        "app-2",
        1,
        "node-a",
        "host-a",
        {"name": "x", "tasks": []},
        b"",
        "digest",
        "alice",
        (),
        {},
        0,
        "",
        b"",
        '{"v":1,"user":"alice"}',
        "alice",
    ),
    JournalAppend("app-1", 2, 4, '{"k":"cancel","reason":"x"}', "host-b", b""),
    JournalAck("app-1", 2, 4, True),
    JournalAck("app-1", 2, 4, True, 5),
    Replicas("app-1", 2, ("node-b",)),
    Replicas("app-1", 2, ("node-b", "node-c"), 7, ("node-b",), True),
    AppQuery("app-1"),
    AppState("app-1", 2, "running", True, False),
    FetchApp("app-1"),
    AppResults("app-1", "name", 2, True, "finished", {"app": "app-1"}, b"tar"),
    CancelApp("app-1", "cancelled by the user"),
    Fenced("app-1", 3),
    CondorJoin("app-1", 2, "app-1-abc123", "169.254.1.2", 9618, "eyJ0b2tlbiI"),
    CondorJoined("app-1", True, "", "169-254-1-3.bjgrid"),
    BoincAttach("app-1", 2, "http://169.254.1.2:8080/app-1/", "0123abcd", "bjgrid app-1"),
    BoincAttached("app-1", False, "attach refused", ""),
    VoteRequest("app-1", 4, "n2", 17, 3),
    VoteRequest("app-1", 4, "n2", 17, 3, 6),
    Vote("app-1", 4, True, ""),
    GiveBack("app-1", "t3", 2, "the owner is back"),
    Reserve("app-1", "n1", "h1", 2, 8.0, "condor", "alice", "sig", "ab" * 32, {"tasks": []}),
    RunTask("app-1", 3, "t2", 1, ("true",), {}, 5.0, 1, (), b"", "", 256, True),
]


def raw(kind: int, doc: object, *blobs: bytes, text: str | None = None) -> bytes:
    body = (json.dumps(doc) if text is None else text).encode()
    return struct.pack(">HI", kind, len(body)) + body + b"".join(blobs)


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_control_message_round_trips(msg: object) -> None:
    data = CONTROL.encode(msg)
    assert CONTROL.decode(data) == msg
    assert type(CONTROL.decode(data)) is type(msg)


def test_examples_cover_every_registered_message() -> None:
    assert {type(m) for m in EXAMPLES} == set(CONTROL.types().values())


def test_kind_numbers_are_the_protocol() -> None:
    # ONLY APPEND: changing any of these numbers breaks every deployed node.
    expected = {
        "PING": 1, "PONG": 2, "RESERVE": 3, "RESERVE_REPLY": 4, "HEARTBEAT": 5,
        "HEARTBEAT_ACK": 6, "RELEASE": 7, "STAGE_APP": 8, "STAGE_ACK": 9, "RUN_TASK": 10,
        "TASK_RESULT": 11, "APP_ENDED": 12, "ERROR": 13, "CANCEL_TASK": 14, "RESULT_ACK": 15,
        "REPLICA_OPEN": 16, "JOURNAL_APPEND": 17, "JOURNAL_ACK": 18, "REPLICAS": 19,
        "APP_QUERY": 20, "APP_STATE": 21, "FETCH_APP": 22, "APP_RESULTS": 23, "CANCEL_APP": 24,
        "FENCED": 25, "CONDOR_JOIN": 26, "CONDOR_JOINED": 27, "VOTE_REQUEST": 28, "VOTE": 29,
        "BOINC_ATTACH": 30, "BOINC_ATTACHED": 31, "GIVE_BACK": 32,
    }  # fmt: skip
    assert {k.name: k.value for k in Kind} == expected
    assert CONTROL.kind_of(Reserve) == 3
    assert CONTROL.types()[Kind.RUN_TASK] is RunTask


def test_bytes_travel_raw_after_the_json() -> None:
    bundle = b"\xff\x00binary\x80" * 10
    data = CONTROL.encode(StageApp("a", 1, "h", bundle))
    assert data.endswith(bundle)
    kind, json_len = struct.unpack_from(">HI", data)
    assert kind == Kind.STAGE_APP
    doc = json.loads(data[6 : 6 + json_len])
    assert doc["bundle"] == len(bundle)
    assert len(data) == 6 + json_len + len(bundle)


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(MessageError, match="unknown control message kind 999"):
        CONTROL.decode(raw(999, {}))


def test_missing_field_is_refused() -> None:
    with pytest.raises(MessageError, match="missing \\['slots'\\]"):
        CONTROL.decode(raw(Kind.RESERVE_REPLY, {"app": "a", "accepted": True, "reason": ""}))


def test_extra_field_is_refused() -> None:
    doc = {"app": "a", "term": 1, "reason": "", "spare": 1}
    with pytest.raises(MessageError, match="unexpected \\['spare'\\]"):
        CONTROL.decode(raw(Kind.RELEASE, doc))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("app", 5),  # int for str
        ("term", True),  # bool is not an int
        ("term", 1.0),  # float for int
        ("lease", "30"),  # str for float
        ("lease", False),  # bool for float
        ("backend", None),  # None for a non-optional str
    ],
)
def test_wrongly_typed_field_is_refused(field: str, value: object) -> None:
    doc: dict[str, object] = {
        "app": "a",
        "coordinator": "c",
        "coordinator_host": "h",
        "term": 1,
        "lease": 2.5,
        "backend": "embedded",
        "user": "",
        "signature": "",
        "bundle_sha256": "",
        "spec": {},
        "ce_key": "",
        "proof": "",
    }
    assert CONTROL.decode(raw(Kind.RESERVE, doc)) == Reserve("a", "c", "h", 1, 2.5, "embedded")
    doc[field] = value
    with pytest.raises(MessageError, match=f"Reserve.{field}"):
        CONTROL.decode(raw(Kind.RESERVE, doc))


def test_float_field_accepts_an_int() -> None:
    msg = CONTROL.decode(raw(Kind.HEARTBEAT, {"app": "a", "term": 1, "lease": 30}))
    assert isinstance(msg, Heartbeat)
    assert msg == Heartbeat("a", 1, 30.0)
    assert type(msg.lease) is float


@pytest.mark.parametrize(
    "text",
    [
        '{"reason": NaN}',
        '{"reason": "a", "reason": "b"}',  # duplicate key
        '{"reason": "\\ud800"}',  # lone surrogate
        '{"reason": "a"',  # truncated
        '["reason"]',  # not an object
        "[" * 100_000,  # deeper than the parser's recursion limit
    ],
)
def test_bad_json_is_refused(text: str) -> None:
    with pytest.raises(MessageError):
        CONTROL.decode(raw(Kind.ERROR, None, text=text))


def test_infinite_float_is_refused_both_ways() -> None:
    with pytest.raises(MessageError):
        CONTROL.decode(raw(Kind.HEARTBEAT, None, text='{"app":"a","term":1,"lease":1e999}'))
    with pytest.raises(MessageError, match="finite"):
        CONTROL.encode(Heartbeat("a", 1, math.inf))


def test_blob_lengths_must_match_the_blob_section() -> None:
    doc = {"app": "a", "term": 1, "sha256": "h", "bundle": 4}
    assert CONTROL.decode(raw(Kind.STAGE_APP, doc, b"abcd")) == StageApp("a", 1, "h", b"abcd")
    with pytest.raises(MessageError, match="past the end"):
        CONTROL.decode(raw(Kind.STAGE_APP, doc, b"abc"))
    with pytest.raises(MessageError, match="trailing"):
        CONTROL.decode(raw(Kind.STAGE_APP, doc, b"abcde"))
    with pytest.raises(MessageError, match="blob length"):
        CONTROL.decode(raw(Kind.STAGE_APP, {**doc, "bundle": -1}, b""))
    with pytest.raises(MessageError, match="trailing"):
        CONTROL.decode(CONTROL.encode(Ping()) + b"x")


def test_oversized_messages_are_refused_both_ways() -> None:
    small = Registry("small", max_size=200)
    small.register(1)(StageApp)
    assert small.decode(small.encode(StageApp("a", 1, "h", b"x" * 100))) is not None
    with pytest.raises(MessageError, match="exceeds 200"):
        small.encode(StageApp("a", 1, "h", b"x" * 200))
    big = CONTROL.encode(StageApp("a", 1, "h", b"x" * 200))
    with pytest.raises(MessageError, match="exceeds 200"):
        small.decode(big.replace(struct.pack(">H", Kind.STAGE_APP), struct.pack(">H", 1), 1))


def test_header_shorter_than_six_bytes_is_refused() -> None:
    for n in range(6):
        with pytest.raises(MessageError):
            CONTROL.decode(b"\x00\x01\x00\x00\x00\x02"[:n])


@pytest.mark.parametrize(
    "msg",
    [
        HeartbeatAck("a", 1, ["t1"]),  # type: ignore[arg-type]  # list for a tuple
        RunTask("a", 1, "t", 0, (), {"A": 1}, None, 1, (), b"", ""),  # type: ignore[dict-item]
        Reserve("a", "c", "h", True, 1.0, "e"),  # bool for int
        StageApp("a", 1, "h", "not bytes"),  # type: ignore[arg-type]
    ],
)
def test_encode_refuses_wrongly_typed_fields(msg: object) -> None:
    with pytest.raises(MessageError):
        CONTROL.encode(msg)


def test_encode_refuses_unregistered_messages() -> None:
    @dataclass(frozen=True)
    class Stray:
        x: int

    with pytest.raises(MessageError, match="not a control message"):
        CONTROL.encode(Stray(1))


# --- the registry as the lead's LOCAL registry would use it --------------------------------

LOCAL = Registry("local-test")


def _nested(depth: int) -> list[object]:
    doc: list[object] = []
    for _ in range(depth):
        doc = [doc]
    return doc


@LOCAL.register(1)
@dataclass(frozen=True)
class Submit:
    doc: dict[str, object]
    items: list[object]
    maybe: bytes | None
    count: int | None
    flag: bool | None
    ratio: float | None
    ids: tuple[int, ...]


def test_a_second_registry_supports_opaque_json_and_optionals() -> None:
    msg = Submit(
        {"name": "x", "tasks": [{"id": "t", "cpus": 2, "env": {}}], "ok": None},
        [1, "two", 3.5, [True]],
        None,
        None,
        False,
        0.5,
        (1, -2),
    )
    assert LOCAL.decode(LOCAL.encode(msg)) == msg
    with_blob = dataclasses.replace(msg, maybe=b"\x00\x01", count=7)
    assert LOCAL.decode(LOCAL.encode(with_blob)) == with_blob


@pytest.mark.parametrize(
    "doc",
    [
        {"x": object()},  # not JSON
        {"x": {1: "int key"}},
        {"x": math.nan},
        {"x": _nested(MAX_JSON_DEPTH + 1)},
    ],
)
def test_opaque_json_must_be_plain_json(doc: dict[str, object]) -> None:
    with pytest.raises(MessageError):
        LOCAL.encode(Submit(doc, [], None, None, None, None, ()))


def test_a_class_can_live_in_two_registries_under_different_kinds() -> None:
    other = Registry("other")
    other.register(40)(Reserve)
    msg = Reserve("a", "c", "h", 1, 2.0, "e")
    assert other.decode(other.encode(msg)) == msg
    with pytest.raises(MessageError, match="unknown control message kind 40"):
        CONTROL.decode(other.encode(msg))


def test_registration_mistakes_fail_at_import_time() -> None:
    reg = Registry("r")
    reg.register(1)(Ping)
    with pytest.raises(ValueError, match="already taken"):
        reg.register(1)(Error)
    with pytest.raises(ValueError, match="out of range"):
        reg.register(70_000)

    @dataclass
    class Mutable:
        x: int

    with pytest.raises(TypeError, match="frozen"):
        reg.register(2)(Mutable)

    @dataclass(frozen=True)
    class Unsupported:
        x: set[str]

    with pytest.raises(TypeError, match="unsupported"):
        reg.register(3)(Unsupported)


# --- properties -----------------------------------------------------------------------------

_text = st.text(max_size=20)
_finite = st.floats(allow_nan=False, allow_infinity=False)
_SCALAR: dict[object, st.SearchStrategy[object]] = {
    str: _text,
    int: st.integers(),
    float: _finite,
    bool: st.booleans(),
    bytes: st.binary(max_size=64),
}


def _strategy(tp: object) -> st.SearchStrategy[object]:
    if tp in _SCALAR:
        return _SCALAR[tp]
    args = typing.get_args(tp)
    if type(None) in args:
        return st.none() | _SCALAR[args[0]]
    if typing.get_origin(tp) is tuple:
        return st.lists(_SCALAR[args[0]], max_size=4).map(tuple)
    if typing.get_origin(tp) is dict:
        return st.dictionaries(_text, _text, max_size=4)
    raise AssertionError(tp)


_id = st.from_regex(NAME_RE, fullmatch=True).filter(lambda s: s not in RESERVED_IDS)
_count = st.integers(min_value=0)
_duration = st.floats(min_value=0, allow_nan=False, allow_infinity=False)
_label = st.text(st.characters(min_codepoint=32, blacklist_categories=("Cs",)), max_size=20)
_BY_NAME: dict[str, st.SearchStrategy[object]] = {
    # the field-name rules of control/message_checks.py: the valid values of each
    **dict.fromkeys(["app", "task", "node", "candidate"], _id),
    "coordinator": _id,
    **dict.fromkeys(["replicas", "old", "coordinates"], st.lists(_id, max_size=4).map(tuple)),
    "hosts": st.dictionaries(_id, _label.filter(lambda s: "/" not in s), max_size=4),
    **dict.fromkeys(["host", "coordinator_host", "collector_host"], st.just("host-1")),
    **dict.fromkeys(["user", "signer"], st.just("") | st.just("alice@lab")),
    "name": _id,
    "env": st.dictionaries(st.from_regex(r"[A-Z_]{1,8}", fullmatch=True), _label, max_size=4),
    "running": st.lists(_label, max_size=4).map(tuple),
    **dict.fromkeys(
        ["attempt", "term", "last_term", "seq", "members", "version", "cpus", "slots"], _count
    ),
    **dict.fromkeys(["free_slots", "memory_mb"], _count),
    **dict.fromkeys(["lease", "seconds"], _duration),
    "timeout": st.none() | _duration,
}


def _message(cls: type) -> st.SearchStrategy[object]:
    hints = typing.get_type_hints(cls)

    def pick(name: str) -> st.SearchStrategy[object]:
        if name == "outputs" and hints[name] is not bytes:
            return st.lists(_id, max_size=4).map(tuple)
        if name == "coordinator" and type(None) in typing.get_args(hints[name]):
            return st.none() | _id
        if name == "app" and type(None) in typing.get_args(hints[name]):
            return st.none() | _id
        found = _BY_NAME.get(name)
        return found if found is not None else _strategy(hints[name])

    return st.builds(cls, **{f.name: pick(f.name) for f in dataclasses.fields(cls)})


_any_message = st.one_of([_message(cls) for cls in CONTROL.types().values()])


@given(_any_message)
def test_any_valid_message_round_trips(msg: object) -> None:
    assert CONTROL.decode(CONTROL.encode(msg)) == msg


def _decode_or_message_error(data: bytes) -> None:
    with contextlib.suppress(MessageError):
        CONTROL.decode(data)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_nothing_but_message_error(data: bytes) -> None:
    _decode_or_message_error(data)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300)
@given(
    st.sampled_from(list(Kind)),
    st.dictionaries(st.sampled_from(["app", "term", "lease", "bundle", "inputs", "x"]), _json),
    st.binary(max_size=20),
)
def test_well_framed_garbage_raises_nothing_but_message_error(
    kind: Kind, doc: dict[str, object], tail: bytes
) -> None:
    _decode_or_message_error(raw(kind, doc, tail))


@given(_any_message, st.data())
def test_corrupted_encodings_raise_nothing_but_message_error(
    msg: object, data: st.DataObject
) -> None:
    buf = bytearray(CONTROL.encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    _decode_or_message_error(bytes(buf))
    _decode_or_message_error(bytes(buf[:cut]))
