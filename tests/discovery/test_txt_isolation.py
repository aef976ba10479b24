"""The volunteer record says how it isolates tasks and, when it cannot, why (``iso``/``isr``)."""

from __future__ import annotations

from bonjourgrid.discovery.txt import MAX_REASON, NodeTxt, decode_node, encode_node

BASE = NodeTxt("g1", "n1", "h1", 4, 4, 8000, "linux", "x86_64", ("embedded",))


def raw(props: dict[str, str]) -> dict[bytes, bytes | None]:
    return {k.encode(): v.encode() for k, v in props.items()}


def test_the_isolation_mode_and_reason_travel_in_the_record() -> None:
    t = NodeTxt(**{**BASE.__dict__, "isolation": "none", "isolation_reason": "no bubblewrap"})
    props = encode_node(t)
    assert props["iso"] == "none" and props["isr"] == "no bubblewrap"
    assert decode_node(raw(props)) == t


def test_a_record_without_them_reads_as_unsaid() -> None:
    props = encode_node(BASE)
    assert "iso" not in props and "isr" not in props
    got = decode_node(raw(props))
    assert (got.isolation, got.isolation_reason) == ("", "")


def test_a_long_or_unprintable_reason_is_cut_and_cleaned() -> None:
    why = "bwrap: \x1b[31mred\n" + "x" * 500
    t = NodeTxt(**{**BASE.__dict__, "isolation": "none", "isolation_reason": why})
    props = encode_node(t)
    assert len(props["isr"]) == MAX_REASON and props["isr"].isprintable()
    assert "\x1b" not in props["isr"] and props["isr"].endswith("...")


def test_a_hostile_peer_s_reason_is_cut_and_cleaned_when_read() -> None:
    props = encode_node(BASE) | {"iso": "none\x1b]0;x", "isr": "\x1b[2J" + "y" * 300}
    got = decode_node(raw(props))
    assert len(got.isolation_reason) == MAX_REASON and got.isolation_reason.isprintable()
    assert "\x1b" not in got.isolation + got.isolation_reason
