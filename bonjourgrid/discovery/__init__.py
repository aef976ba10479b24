"""Discovery over mDNS/DNS-SD: the only package that imports zeroconf.

``Discovery`` owns the host's one mDNS stack: it advertises the volunteer's one state (idle or
worker) and one coordinator record per app, and browses a live view of the grid. ``names`` and
``txt`` are the pure wire formats. See docs/discovery.md.
"""

from __future__ import annotations

from .interfaces import DiscoveryError, select_addresses
from .names import (
    COORD_TYPE,
    IDLE_TYPE,
    WORKER_TYPE,
    instance_label,
    server_name,
)
from .service import Discovery
from .txt import (
    MAX_TXT_BYTES,
    TXT_VERSION,
    CoordTxt,
    NodeTxt,
    TxtError,
    decode_coord,
    decode_node,
    encode_coord,
    encode_node,
)
from .view import CoordinatorRecord, Machine

__all__ = [
    "COORD_TYPE",
    "IDLE_TYPE",
    "MAX_TXT_BYTES",
    "TXT_VERSION",
    "WORKER_TYPE",
    "CoordTxt",
    "CoordinatorRecord",
    "Discovery",
    "DiscoveryError",
    "Machine",
    "NodeTxt",
    "TxtError",
    "decode_coord",
    "decode_node",
    "encode_coord",
    "encode_node",
    "instance_label",
    "select_addresses",
    "server_name",
]
