"""The control channel: message codec, authentication, and channels between daemons.

See docs/protocol.md for the wire format.
"""

from __future__ import annotations

from bonjourgrid.control.channel import AuthError, Channel, connect, serve
from bonjourgrid.control.codec import MAX_MESSAGE, MessageError, Registry
from bonjourgrid.control.frame_channel import ChannelClosed
from bonjourgrid.control.framing import MAX_FRAME
from bonjourgrid.control.local_channel import LocalChannel, open_local, serve_local
from bonjourgrid.control.messages import (
    CONTROL,
    AppEnded,
    CancelTask,
    Error,
    Heartbeat,
    HeartbeatAck,
    Kind,
    Ping,
    Pong,
    Release,
    Reserve,
    ReserveReply,
    ResultAck,
    RunTask,
    StageAck,
    StageApp,
    TaskResult,
)

__all__ = [
    "CONTROL",
    "MAX_FRAME",
    "MAX_MESSAGE",
    "AppEnded",
    "AuthError",
    "CancelTask",
    "Channel",
    "ChannelClosed",
    "Error",
    "Heartbeat",
    "HeartbeatAck",
    "Kind",
    "LocalChannel",
    "MessageError",
    "Ping",
    "Pong",
    "Registry",
    "Release",
    "Reserve",
    "ReserveReply",
    "ResultAck",
    "RunTask",
    "StageAck",
    "StageApp",
    "TaskResult",
    "connect",
    "open_local",
    "serve",
    "serve_local",
]
