"""A node's key is made once, kept private, and its fingerprint is the node id; the random id
of version 1 is replaced, and a damaged key file is moved aside, not fatal."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from bonjourgrid.control.nodekey import node_fingerprint
from bonjourgrid.daemon.hostinfo import detect, load_node_key
from bonjourgrid.discovery.names import instance_label, server_name
from bonjourgrid.ids import check_node_id


def test_first_start_makes_a_private_key_whose_fingerprint_is_the_node_id(tmp_path: Path) -> None:
    key = load_node_key(tmp_path / "state")
    path = tmp_path / "state" / "node.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.node_id == node_fingerprint(key.public)
    assert (tmp_path / "state" / "node-id").read_text().strip() == key.node_id
    assert load_node_key(tmp_path / "state") == key  # stable across restarts
    assert detect(key).node_id == key.node_id and detect(key).node_key == key


def test_the_node_id_passes_the_id_rules_and_fits_dns_sd_labels() -> None:
    from bonjourgrid.control.nodekey import NodeKey

    node = NodeKey.generate().node_id
    assert check_node_id(node) == node
    long_host = "a-very-long-desktop-name-in-the-physics-lab-building-seven"
    assert len(instance_label(long_host, node, "app-" + "x" * 60).encode()) <= 63
    assert server_name(long_host, node).endswith(f"-{node}.local.")


def test_a_random_node_id_of_version_1_is_replaced_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "node-id").write_text("3fa9c2d1\n")
    with caplog.at_level(logging.WARNING, logger="bonjourgrid.daemon.hostinfo"):
        key = load_node_key(tmp_path)
    assert (tmp_path / "node-id").read_text().strip() == key.node_id != "3fa9c2d1"
    assert "node id 3fa9c2d1 of an earlier bjgrid replaced by " + key.node_id in caplog.text


def test_a_key_file_others_can_read_is_made_private(tmp_path: Path) -> None:
    key = load_node_key(tmp_path)
    os.chmod(tmp_path / "node.key", 0o644)
    assert load_node_key(tmp_path) == key
    assert stat.S_IMODE((tmp_path / "node.key").stat().st_mode) == 0o600


@pytest.mark.parametrize("damage", ["garbage", "link"])
def test_a_damaged_key_file_is_moved_aside_and_a_new_key_made(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "node.key"
    secret = tmp_path / "grid.key"
    secret.write_text("not yours")
    if damage == "link":
        path.symlink_to(secret)  # never followed: the target keeps its content
    else:
        path.write_text("bjgrid-node-key-v1 nothex\n")
    with caplog.at_level(logging.WARNING, logger="bonjourgrid.daemon.hostinfo"):
        key = load_node_key(tmp_path)
    assert "making a new" in caplog.text
    assert path.is_file() and not path.is_symlink()
    assert load_node_key(tmp_path) == key
    assert secret.read_text() == "not yours"
    assert len(list(tmp_path.glob("node.key.*"))) == 1


def test_the_key_file_keeps_the_public_key_and_an_older_file_is_rewritten(tmp_path: Path) -> None:
    from bonjourgrid.control.nodekey import NODE_KEY_MAGIC

    key = load_node_key(tmp_path)
    path = tmp_path / "node.key"
    assert path.read_text() == f"{NODE_KEY_MAGIC} {key.seed.hex()} {key.public.hex()}\n"
    path.write_text(f"{NODE_KEY_MAGIC} {key.seed.hex()}\n")  # as bjgrid before it wrote
    assert load_node_key(tmp_path) == key
    assert path.read_text().split() == [NODE_KEY_MAGIC, key.seed.hex(), key.public.hex()]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_key_file_whose_public_half_is_not_its_seeds_never_signs(tmp_path: Path) -> None:
    """Hostile: a file edited to claim another node's public key (its node id) gets a
    NodeKeyError at the first signature, never a handshake under an id it cannot prove."""
    from bonjourgrid.control.nodekey import NODE_KEY_MAGIC, NodeKey, NodeKeyError

    victim = NodeKey(b"v" * 32)
    forged = NodeKey.loads(f"{NODE_KEY_MAGIC} {'11' * 32} {victim.public.hex()}\n")
    assert forged.node_id == victim.node_id  # what it would advertise...
    with pytest.raises(NodeKeyError, match="not its seed's"):
        forged.sign(b"transcript")  # ...but it cannot speak as it
    assert victim.sign(b"transcript")
