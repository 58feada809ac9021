"""Just enough client-side WebSocket (RFC 6455) and Cobra protocol for the load generator, without I/O.

Why not a WebSocket library: a load client that parses every frame into Python objects would be the
bottleneck long before the broker is. Here a worker walks frame headers only, and the benchmark's counters are
read from the payload bytes with one regular expression per received chunk (see ``worker.py``). Frames the
client sends are masked as §5.3 requires, with a per-connection random key, so the server pays its real
unmasking cost. permessage-deflate is not offered: both servers are measured on plain frames.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from typing import Any
from urllib.parse import urlsplit

import orjson

try:  # SIMD XOR from python-websockets (a dependency of the project); the int fallback is also whole-buffer.
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover

    def apply_mask(data: bytes, mask: bytes) -> bytes:
        n = len(data)
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
        return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")


GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


class HandshakeError(Exception):
    """The server did not answer the upgrade with 101 (wrong app key, not a WebSocket server...)."""


def split_target(target: str) -> tuple[str, int, str]:
    """``ws://host:port/path?query`` → (host, port, path without query)."""
    parts = urlsplit(target)
    if parts.scheme != "ws":
        raise ValueError(f"only ws:// targets are supported (loopback benchmarks), got {target!r}")
    path = parts.path or "/"
    if path == "/":  # the reference's CLI appends /v2 itself; both servers accept any path
        path = "/v2"
    return parts.hostname or "127.0.0.1", parts.port or 80, path


def upgrade_request(host: str, port: int, path: str, appkey: str) -> tuple[bytes, bytes]:
    """(request bytes, expected Sec-WebSocket-Accept) for an upgrade that offers the ``json`` sub-protocol."""
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    request = (
        f"GET {path}?appkey={appkey} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: json\r\n"
        "User-Agent: cobra-bench\r\n\r\n"
    ).encode()
    return request, accept


def check_upgrade_response(head: bytes, accept: bytes) -> None:
    status_line, _, rest = head.partition(b"\r\n")
    if b" 101 " not in status_line + b" ":
        raise HandshakeError(status_line.decode(errors="replace"))
    if accept.lower() not in rest.lower():
        raise HandshakeError("bad Sec-WebSocket-Accept")


def encode_frame(payload: bytes, mask: bytes, opcode: int = OP_TEXT) -> bytes:
    """One final client frame (§5.2), masked with ``mask`` (4 bytes)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return header + mask + apply_mask(payload, mask)


def parse_frames(buffer: bytearray | bytes, start: int = 0) -> tuple[list[tuple[int, int, int]], int]:
    """Complete server frames in ``buffer`` from ``start``: ([(opcode, payload_start, payload_end)], end).

    Server frames are never masked (§5.1). Fragmented messages are not produced by either server for the
    small PDUs of the benchmark; a continuation frame is returned with opcode 0 and counted as an error.
    """
    frames = []
    pos = start
    size = len(buffer)
    while size - pos >= 2:
        b1 = buffer[pos + 1] & 0x7F
        if b1 < 126:
            begin = pos + 2
            length = b1
        elif b1 == 126:
            if size - pos < 4:
                break
            length = (buffer[pos + 2] << 8) | buffer[pos + 3]
            begin = pos + 4
        else:
            if size - pos < 10:
                break
            length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
            begin = pos + 10
        end = begin + length
        if end > size:
            break
        frames.append((buffer[pos] & 0x0F, begin, end))
        pos = end
    return frames, pos


def pdu(action: str, pdu_id: int, body: dict[str, Any]) -> bytes:
    return orjson.dumps({"action": action, "id": pdu_id, "body": body})


def handshake_pdu(role: str) -> bytes:
    return pdu("auth/handshake", 0, {"method": "role_secret", "data": {"role": role}})


def authenticate_pdu(secret: str, nonce: str) -> bytes:
    """PROTOCOL §3: hash = Base64(HMAC-MD5(secret, nonce))."""
    digest = hmac.new(secret.encode(), nonce.encode(), hashlib.md5).digest()
    return pdu(
        "auth/authenticate",
        1,
        {"method": "role_secret", "credentials": {"hash": base64.b64encode(digest).decode()}},
    )


def subscribe_pdu(pdu_id: int, channel: str, subscription_id: str, stream_sql: str | None) -> bytes:
    body: dict[str, Any] = {"channel": channel, "subscription_id": subscription_id}
    if stream_sql:
        body["filter"] = stream_sql
    return pdu("rtm/subscribe", pdu_id, body)
