"""TXT keys for matchmaking and fair share: volunteer attributes (x-*), coordinator w/d/wt."""

from __future__ import annotations

import dataclasses

import pytest

from bonjourgrid.discovery.txt import (
    MAX_ATTRIBUTE_BYTES,
    MAX_TXT_BYTES,
    CoordTxt,
    NodeTxt,
    TxtError,
    clean_attributes,
    decode_coord,
    decode_node,
    encode_coord,
    encode_node,
    txt_size,
)

NODE = NodeTxt(
    grid="0badc0de", node="a1b2c3d4", host="lab-pc-17", cpus=8, slots=6, mem_mb=16384,
    os="linux", arch="x86_64", backends=("embedded", "condor", "boinc"),
)  # fmt: skip
COORD = CoordTxt(
    grid="0badc0de", node="a1b2c3d4", host="lab-pc-17", app="app-1", name="sweep", user="ann",
    term=1,
)  # fmt: skip


def wire(props: dict[str, str]) -> dict[bytes, bytes | None]:
    return {k.encode(): v.encode() for k, v in props.items()}


def test_attributes_travel_as_x_keys_and_come_back():
    t = dataclasses.replace(NODE, attributes=(("gpu", "none"), ("site", "lab2")))
    props = encode_node(t)
    assert props["x-gpu"] == "none" and props["x-site"] == "lab2"
    assert decode_node(wire(props)) == t


def test_malformed_attributes_are_dropped_with_a_reason():
    kept, dropped = clean_attributes(
        {"site": "lab2", "Bad Name": "x", "empty": "", "ctl": "a\nb", "num": 3, "long": "x" * 33}
    )
    assert kept == (("site", "lab2"),)
    assert len(dropped) == 5
    assert any("Bad Name" in d for d in dropped) and any("long" in d for d in dropped)


def test_attributes_beyond_the_budget_are_dropped_and_the_record_stays_small():
    many = {f"a{i:02d}": "v" * 32 for i in range(20)}
    kept, dropped = clean_attributes(many)
    assert kept and dropped
    assert txt_size({f"x-{k}": v for k, v in kept}) <= MAX_ATTRIBUTE_BYTES
    worker = dataclasses.replace(NODE, attributes=kept, app="a" * 60, coordinator="ffee0011")
    assert txt_size(encode_node(worker)) < MAX_TXT_BYTES


def test_encoder_refuses_attributes_that_would_be_dropped():
    with pytest.raises(TxtError):
        encode_node(dataclasses.replace(NODE, attributes=(("Bad", "x"),)))


def test_decoder_skips_unreadable_x_keys_but_keeps_the_record():
    props = {**encode_node(NODE), "x-Bad": "v", "x-ok": "yes", "x-": "z"}
    assert decode_node(wire(props)).attributes == (("ok", "yes"),)


def test_coordinator_record_carries_workers_demand_and_weight():
    assert "w" not in encode_coord(COORD)  # defaults are not sent
    assert decode_coord(wire(encode_coord(COORD))) == COORD
    busy = dataclasses.replace(COORD, workers=3, demand=12, weight=2)
    props = encode_coord(busy)
    assert (props["w"], props["d"], props["wt"]) == ("3", "12", "2")
    assert decode_coord(wire(props)) == busy


def test_bad_weights_are_refused_on_encode_and_clamped_on_decode():
    for bad in (0, 1001):
        with pytest.raises(TxtError):
            encode_coord(dataclasses.replace(COORD, weight=bad))
    props = {**encode_coord(dataclasses.replace(COORD, workers=1)), "wt": "0"}
    assert decode_coord(wire(props)).weight == 1
    with pytest.raises(TxtError):
        decode_coord(wire({**props, "w": "-1"}))
