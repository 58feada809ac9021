"""RFC 6455/7692 inside gevent-websocket's server: handshake, frames, deflate, the closing handshake and
keepalive timing (sans I/O), and the upgraded socket (transport, stock).

This package knows nothing about PDUs: it turns bytes into messages and messages into frames.
"""

from .closing import CLOSE_TIMEOUT, CloseHandshake, CloseState
from .frames import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_INVALID_DATA,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CLOSE_PROTOCOL_ERROR,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Event,
    MessageReader,
    ProtocolError,
    encode_close,
    encode_frame,
    parse_close_payload,
    text_frame_header,
)
from .handshake import HandshakeError, Upgrade, check_upgrade, is_websocket_request
from .keepalive import Keepalive, KeepaliveAction, poll_interval
from .stock import StockUpgrades
from .transport import ACCEPT_KEY, CobraWebSocketHandler, ConnectionClosed, WebSocket

__all__ = [
    "ACCEPT_KEY",
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_INVALID_DATA",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_NORMAL",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_TIMEOUT",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "CloseHandshake",
    "CloseState",
    "CobraWebSocketHandler",
    "ConnectionClosed",
    "Event",
    "HandshakeError",
    "Keepalive",
    "KeepaliveAction",
    "MessageReader",
    "ProtocolError",
    "StockUpgrades",
    "Upgrade",
    "WebSocket",
    "check_upgrade",
    "encode_close",
    "encode_frame",
    "is_websocket_request",
    "parse_close_payload",
    "poll_interval",
    "text_frame_header",
]
