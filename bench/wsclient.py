"""The raw client side of WebSocket (RFC 6455) and just enough Cobra protocol, for bench/ and tests.

One module for both users of a byte-level client. The functions are sans-I/O: the load generator's epoll
loop (``pool.py``, ``worker.py``) drives them, and so do :class:`RawWebSocket` (a blocking socket, for edge
tests that must send exactly the frames they ask for, valid or not) and the shard benchmark's publishers.

Why not a WebSocket library: a load client that parses every frame into Python objects would be the
bottleneck long before the broker is. Here a worker walks frame headers only, and the benchmark's counters are
read from the payload bytes with one regular expression per received chunk (see ``worker.py``). Frames the
client sends are masked as §5.3 requires, with a per-connection random key, so the server pays its real
unmasking cost. permessage-deflate is not offered by the load generator: both servers are measured on plain
frames (tests ask for it through headers and compress by hand).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import time
import zlib
from collections import deque
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

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

FIN = 0x80
RSV1 = 0x40  # permessage-deflate's "compressed" bit (RFC 7692 §6)
RSV2 = 0x20

# Pre-bound packers: encode_frame runs once per publish in the load generator's hot loop.
_HEAD_7 = struct.Struct("!BB").pack
_HEAD_16 = struct.Struct("!BBH").pack
_HEAD_64 = struct.Struct("!BBQ").pack


class HandshakeError(Exception):
    """The server did not answer the upgrade with 101 (wrong app key, not a WebSocket server...)."""


# --------------------------------------------------------------------------- the opening handshake
def split_target(target: str) -> tuple[str, int, str]:
    """``ws://host:port/path?query`` → (host, port, path without query)."""
    parts = urlsplit(target)
    if parts.scheme != "ws":
        raise ValueError(f"only ws:// targets are supported (loopback benchmarks), got {target!r}")
    path = parts.path or "/"
    if path == "/":  # the reference's CLI appends /v2 itself; both servers accept any path
        path = "/v2"
    return parts.hostname or "127.0.0.1", parts.port or 80, path


def accept_key(key: str) -> bytes:
    """The Sec-WebSocket-Accept a server must answer to ``key`` (§4.2.2 step 5.4)."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())


def upgrade_request(
    path: str, extra_headers: dict[str, str | None] | None = None, version: str = "HTTP/1.1"
) -> bytes:
    """A GET upgrade of ``path`` (query included); ``extra_headers`` override the defaults, None drops one."""
    headers: dict[str, str | None] = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    headers.update(extra_headers or {})
    lines = [f"GET {path} {version}"] + [f"{k}: {v}" for k, v in headers.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def json_upgrade(host: str, port: int, path: str, appkey: str) -> tuple[bytes, bytes]:
    """(request bytes, expected Sec-WebSocket-Accept) for an upgrade that offers the ``json`` sub-protocol."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = upgrade_request(
        f"{path}?appkey={appkey}",
        {
            "Host": f"{host}:{port}",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Protocol": "json",
            "User-Agent": "cobra-bench",
        },
    )
    return request, accept_key(key)


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """(status, lower-cased headers) of an HTTP response head (without the blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def check_upgrade_response(head: bytes, accept: bytes) -> None:
    status_line, _, rest = head.partition(b"\r\n")
    if b" 101 " not in status_line + b" ":
        raise HandshakeError(status_line.decode(errors="replace"))
    if accept.lower() not in rest.lower():
        raise HandshakeError("bad Sec-WebSocket-Accept")


# --------------------------------------------------------------------------- frames (§5.2)
def encode_frame(payload: bytes, mask: bytes | None, opcode: int = OP_TEXT, flags: int = FIN) -> bytes:
    """One client frame: ``flags`` (FIN/RSV bits) | ``opcode``, masked with ``mask`` (4 bytes).

    ``mask=None`` sends it unmasked, which only a test of the server's §5.1 check wants."""
    n = len(payload)
    first = flags | opcode
    if mask is None:
        bit, body, mask = 0, payload, b""
    else:
        bit, body = 0x80, apply_mask(payload, mask)
    if n < 126:
        header = _HEAD_7(first, bit | n)
    elif n < 65536:
        header = _HEAD_16(first, bit | 126, n)
    else:
        header = _HEAD_64(first, bit | 127, n)
    return header + mask + body


def parse_frames(buffer: bytearray | bytes, start: int = 0) -> tuple[list[tuple[int, int, int]], int]:
    """Complete server frames in ``buffer`` from ``start``: ([(opcode, payload_start, payload_end)], end).

    Server frames are never masked (§5.1), so the mask bit is not read; each frame's header starts where the
    previous one ended (``start`` for the first). Fragmented messages are not produced by either server for
    the small PDUs of the benchmark; a continuation frame is returned with opcode 0 and counted as an error.
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


def close_code(payload: bytes) -> int | None:
    """The status code of a close frame's payload (§5.5.1), None when it carries none."""
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


# --------------------------------------------------------------------------- Cobra PDUs
def pdu(action: str, pdu_id: int, body: dict[str, Any]) -> bytes:
    return orjson.dumps({"action": action, "id": pdu_id, "body": body})


def handshake_pdu(role: str) -> bytes:
    return pdu("auth/handshake", 0, {"method": "role_secret", "data": {"role": role}})


def authenticate_pdu(secret: str, nonce: str) -> bytes:
    """PROTOCOL §3: hash = Base64(HMAC-MD5(secret, nonce)), computed here, not by the broker's own code."""
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


# --------------------------------------------------------------------------- a blocking client, for tests
def http_request(port: int, request: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw request bytes to 127.0.0.1:``port``; return (status, headers, body) of the response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status, headers = parse_head(head)
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, headers, body


class Frame:
    def __init__(self, fin: bool, rsv1: bool, opcode: int, payload: bytes) -> None:
        self.fin, self.rsv1, self.opcode, self.payload = fin, rsv1, opcode, payload

    def json(self) -> Any:
        return json.loads(self.payload)

    @property
    def close_code(self) -> int | None:
        return close_code(self.payload) if self.opcode == OP_CLOSE else None


class RawWebSocket:
    """A blocking connection to 127.0.0.1:``port`` that sends exactly the frames asked for."""

    def __init__(
        self, port: int, appkey: str, headers: dict[str, str | None] | None = None, timeout: float = 5.0
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.sendall(upgrade_request(f"/v2?appkey={appkey}", headers))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        self.status, self.headers = parse_head(head)
        self.buffer = bytearray(rest)
        self.frames: deque[Frame] = deque()

    # --- sending -------------------------------------------------------------------------------------
    def send_frame(
        self,
        opcode: int,
        payload: bytes,
        *,
        fin: bool = True,
        rsv1: bool = False,
        rsv2: bool = False,
        mask: bool = True,
    ) -> None:
        flags = (FIN if fin else 0) | (RSV1 if rsv1 else 0) | (RSV2 if rsv2 else 0)
        self.sock.sendall(encode_frame(payload, os.urandom(4) if mask else None, opcode, flags))

    def send_json(self, message: Any, opcode: int = OP_TEXT) -> None:
        self.send_frame(opcode, json.dumps(message).encode())

    def send_compressed_json(self, message: Any) -> None:
        """One permessage-deflate message (RFC 7692 §7.2.1: the trailing 00 00 ff ff is removed)."""
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = compressor.compress(json.dumps(message).encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self.send_frame(OP_TEXT, data[:-4], rsv1=True)

    # --- receiving -----------------------------------------------------------------------------------
    def recv_frame(self, timeout: float = 5.0) -> Frame:
        self.sock.settimeout(timeout)
        while not self.frames:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffer += chunk
            self._take_frames()
        return self.frames.popleft()

    def _take_frames(self) -> None:
        buffer = self.buffer
        found, end = parse_frames(buffer)
        pos = 0
        for opcode, begin, stop in found:
            first, second = buffer[pos], buffer[pos + 1]
            assert not second & 0x80, "server frames must not be masked"
            payload = bytes(buffer[begin:stop])
            rsv1 = bool(first & RSV1)
            if rsv1:  # the server negotiates no context takeover: every message inflates on its own
                payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
            self.frames.append(Frame(bool(first & FIN), rsv1, opcode, payload))
            pos = stop
        del buffer[:end]

    def recv_json(self, timeout: float = 5.0) -> Any:
        """The next data message, answering nothing and skipping control frames other than close."""
        while True:
            frame = self.recv_frame(timeout)
            if frame.opcode == OP_CLOSE:
                raise ConnectionError(f"closed with {frame.close_code}")
            if frame.opcode in (OP_TEXT, OP_BINARY):
                return frame.json()

    def recv_close(self, timeout: float = 5.0) -> Frame:
        """Frames until the close frame (data frames before it are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv_frame(max(0.05, deadline - time.monotonic()))
            if frame.opcode == OP_CLOSE:
                return frame

    def at_eof(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def authenticate(ws: RawWebSocket, role: str, secret: str) -> str:
    """The auth exchange of PROTOCOL §3 over a raw socket; returns the connection id."""
    ws.send_frame(OP_TEXT, handshake_pdu(role))
    data = ws.recv_json()["body"]["data"]
    ws.send_frame(OP_TEXT, authenticate_pdu(secret, data["nonce"]))
    reply = ws.recv_json()
    assert reply["action"] == "auth/authenticate/ok", reply
    return data["connection_id"]
