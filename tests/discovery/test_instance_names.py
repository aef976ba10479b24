"""DNS-SD names: instance labels dot-free, at most 63 bytes, node id always whole."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bonjourgrid.discovery.names import (
    ALL_TYPES,
    instance_label,
    instance_of,
    server_name,
)

NODE = "a1b2c3d4"


def nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def test_plain_label_is_host_dash_node() -> None:
    assert instance_label("lab-pc-17", NODE) == "lab-pc-17-a1b2c3d4"
    assert instance_label("lab-pc-17", NODE, app="sweep") == "sweep-lab-pc-17-a1b2c3d4"


def test_dotted_host_names_lose_their_dots() -> None:
    assert instance_label("pc17.lab.example.org", NODE) == "pc17-lab-example-org-a1b2c3d4"
    assert instance_label("169.254.3.4", NODE) == "169-254-3-4-a1b2c3d4"


def test_long_host_is_truncated_and_node_kept() -> None:
    label = instance_label("h" * 200, NODE)
    assert nbytes(label) == 63
    assert label.endswith("-" + NODE)


def test_multibyte_host_is_truncated_on_a_character_boundary() -> None:
    label = instance_label("é" * 100, NODE)
    assert nbytes(label) <= 63
    assert label.endswith("-" + NODE)
    label.encode("utf-8").decode("utf-8")


def test_altered_app_ids_stay_distinct() -> None:
    dotted = instance_label("pc", NODE, app="sweep.v2")
    dashed = instance_label("pc", NODE, app="sweep-v2")
    assert "." not in dotted
    assert dotted != dashed
    long_a = instance_label("pc", NODE, app="a" * 60 + "1")
    long_b = instance_label("pc", NODE, app="a" * 60 + "2")
    assert long_a != long_b
    assert nbytes(long_a) <= 63 and long_a.endswith(NODE)


def test_unusable_node_ids_are_refused() -> None:
    for bad in ["", "a.b", "x" * 40]:
        with pytest.raises(ValueError):
            instance_label("pc", bad)


@given(st.text(max_size=300), st.none() | st.text(min_size=1, max_size=64))
def test_any_host_and_app_give_a_dot_free_short_label_with_the_node(host, app) -> None:
    label = instance_label(host, NODE, app)
    assert "." not in label
    assert "\\" not in label
    assert 0 < nbytes(label) <= 63
    assert label.endswith(NODE)


def test_server_name_is_ours_not_the_os_host_name() -> None:
    assert server_name("Lab-PC-17", NODE) == "bjg-lab-pc-17-a1b2c3d4.local."
    assert server_name("pc.lab", NODE) == "bjg-pc-lab-a1b2c3d4.local."


@given(st.text(max_size=300))
def test_server_name_is_one_ldh_label(host) -> None:
    name = server_name(host, NODE)
    label = name.removesuffix(".local.")
    assert name.endswith(".local.") and "." not in label
    assert len(label) <= 63 and label.isascii()
    assert label.startswith("bjg-") and label.endswith(NODE)
    assert all(c.isalnum() or c == "-" for c in label)


def test_instance_of_strips_the_type() -> None:
    for type_ in ALL_TYPES:
        assert instance_of(f"pc-{NODE}.{type_}", type_) == f"pc-{NODE}"
