"""The TXT codec: round trips, and refusal (TxtError only) of anything malformed."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bonjourgrid.discovery.txt import (
    MAX_TXT_BYTES,
    CoordTxt,
    NodeTxt,
    TxtError,
    decode_coord,
    decode_node,
    encode_coord,
    encode_node,
    txt_size,
    with_revision,
)

IDLE = NodeTxt(
    grid="0badc0de",
    node="a1b2c3d4",
    host="lab-pc-17",
    cpus=8,
    slots=6,
    mem_mb=16384,
    os="linux",
    arch="x86_64",
    backends=("embedded", "condor", "boinc"),
    policy="ok",
    load=1,
)
WORKER = dataclasses.replace(IDLE, app="sweep.v2", coordinator="ffee0011")
COORD = CoordTxt(
    grid="0badc0de",
    node="a1b2c3d4",
    host="lab-pc-17",
    app="sweep.v2",
    name="sweep",
    user="ann",
    term=3,
)


def wire(props: dict[str, str]) -> dict[bytes, bytes | None]:
    """What zeroconf hands a browser for ``props``."""
    return {k.encode(): v.encode() for k, v in props.items()}


@pytest.mark.parametrize("txt", [IDLE, WORKER, dataclasses.replace(IDLE, backends=())])
def test_node_record_round_trips(txt: NodeTxt) -> None:
    assert decode_node(wire(encode_node(txt))) == txt


def test_coord_record_round_trips() -> None:
    assert decode_coord(wire(encode_coord(COORD))) == COORD


def test_records_are_compact() -> None:
    assert txt_size(encode_node(WORKER)) < 200  # RFC 6763 6.2's preferred bound
    assert txt_size(encode_coord(COORD)) < 200


def test_unknown_keys_are_ignored_for_forward_compatibility() -> None:
    props = wire(encode_node(IDLE))
    props[b"zz"] = b"something new"
    props[b"flag"] = None
    assert decode_node(props) == IDLE


def test_oversized_records_are_refused_both_ways() -> None:
    big = dataclasses.replace(IDLE, backends=tuple(f"backend{i:03d}" for i in range(40)))
    with pytest.raises(TxtError, match="exceeds"):
        encode_node(big)
    props = wire(encode_node(IDLE))
    props[b"x"] = b"y" * MAX_TXT_BYTES
    with pytest.raises(TxtError, match="exceeds"):
        decode_node(props)


@pytest.mark.parametrize("version", [b"2", b"0", b"", b"01", None])
def test_other_versions_are_refused(version: bytes | None) -> None:
    props = wire(encode_node(IDLE))
    props[b"v"] = version
    with pytest.raises(TxtError):
        decode_node(props)


def test_missing_version_is_refused() -> None:
    props = wire(encode_coord(COORD))
    del props[b"v"]
    with pytest.raises(TxtError, match="version"):
        decode_coord(props)


@pytest.mark.parametrize("key", [b"g", b"n", b"h", b"c", b"s", b"m", b"o", b"a", b"b", b"p", b"l"])
def test_each_missing_node_field_is_refused(key: bytes) -> None:
    props = wire(encode_node(IDLE))
    del props[key]
    with pytest.raises(TxtError):
        decode_node(props)


@pytest.mark.parametrize("key", [b"g", b"n", b"h", b"ap", b"nm", b"u", b"t"])
def test_each_missing_coord_field_is_refused(key: bytes) -> None:
    props = wire(encode_coord(COORD))
    del props[key]
    with pytest.raises(TxtError):
        decode_coord(props)


@pytest.mark.parametrize(
    "value", [b"two", b"-1", b"+1", b" 1", b"1_0", "\u0663".encode(), b"", b"9" * 13]
)
def test_bad_integers_are_refused(value: bytes) -> None:
    props = wire(encode_node(IDLE))
    props[b"c"] = value
    with pytest.raises(TxtError):
        decode_node(props)


def test_load_above_the_top_bucket_is_refused() -> None:
    props = wire(encode_node(IDLE))
    props[b"l"] = b"4"
    with pytest.raises(TxtError):
        decode_node(props)
    with pytest.raises(TxtError):
        encode_node(dataclasses.replace(IDLE, load=4))


def test_non_utf8_is_refused() -> None:
    props = wire(encode_node(IDLE))
    props[b"h"] = b"\xff\xfe"
    with pytest.raises(TxtError, match="UTF-8"):
        decode_node(props)
    props = wire(encode_node(IDLE))
    props[b"\xc3"] = b"x"
    with pytest.raises(TxtError, match="UTF-8"):
        decode_node(props)


def test_coordinator_without_app_is_refused() -> None:
    props = wire(encode_node(IDLE))
    props[b"co"] = b"ffee0011"
    with pytest.raises(TxtError):
        decode_node(props)
    with pytest.raises(TxtError):
        encode_node(dataclasses.replace(IDLE, coordinator="ffee0011"))


@pytest.mark.parametrize(
    "bad",
    [
        dataclasses.replace(IDLE, backends=("a,b",)),
        dataclasses.replace(IDLE, backends=("",)),
        dataclasses.replace(IDLE, cpus=-1),
        dataclasses.replace(IDLE, slots=True),
        dataclasses.replace(IDLE, grid=""),
    ],
)
def test_unencodable_fields_are_refused(bad: NodeTxt) -> None:
    with pytest.raises(TxtError):
        encode_node(bad)


props_strategy = st.dictionaries(
    st.one_of(
        st.sampled_from(
            [
                b"v",
                b"g",
                b"n",
                b"h",
                b"c",
                b"s",
                b"m",
                b"o",
                b"a",
                b"b",
                b"p",
                b"l",
                b"ap",
                b"co",
                b"nm",
                b"u",
                b"t",
            ]
        ),
        st.binary(max_size=8),
    ),
    st.one_of(st.none(), st.sampled_from([b"1", b"0", b"", b"x", b"3"]), st.binary(max_size=40)),
    max_size=20,
)


@given(props_strategy)
def test_arbitrary_props_decode_or_raise_txt_error_only(props: dict[bytes, bytes | None]) -> None:
    for decode in (decode_node, decode_coord):
        try:
            decoded = decode(props)
        except TxtError:
            continue
        assert props[b"v"] == b"1"
        assert decoded.grid  # a decoded record always carries its grid id


@given(
    st.builds(
        NodeTxt,
        grid=st.text(min_size=1, max_size=10),
        node=st.text(min_size=1, max_size=10),
        host=st.text(min_size=1, max_size=30),
        cpus=st.integers(0, 1024),
        slots=st.integers(0, 1024),
        mem_mb=st.integers(0, 10**7),
        os=st.text(min_size=1, max_size=8),
        arch=st.text(min_size=1, max_size=8),
        backends=st.lists(
            st.text(st.characters(blacklist_characters=","), min_size=1, max_size=8), max_size=4
        ).map(tuple),
        policy=st.text(min_size=1, max_size=8),
        load=st.integers(0, 3),
        app=st.none() | st.text(min_size=1, max_size=20),
        coordinator=st.none(),
    )
)
def test_any_encodable_node_record_round_trips(txt: NodeTxt) -> None:
    try:
        props = encode_node(txt)
    except TxtError:
        return
    assert decode_node(wire(props)) == txt


def test_unencodable_text_is_refused_with_txt_error() -> None:
    with pytest.raises(TxtError):
        encode_node(dataclasses.replace(IDLE, host="pc\udc80"))
    with pytest.raises(TxtError):
        encode_coord(dataclasses.replace(COORD, user="\ud800"))


def test_the_publication_revision_is_ignored_by_decoders() -> None:
    assert decode_node(wire(with_revision(encode_node(WORKER), 123456789))) == WORKER
    assert decode_coord(wire(with_revision(encode_coord(COORD), 7))) == COORD
    assert with_revision(encode_node(IDLE), 1) != with_revision(encode_node(IDLE), 2)
