"""A byte-level WebSocket client for edge tests: it sends exactly the frames a test asks for, valid or not."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
import zlib
from typing import Any


def http_request(port: int, request: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw request bytes; return (status, headers, body) of the response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status, headers = _parse_head(head)
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, headers, body


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def upgrade_request(
    path: str, extra_headers: dict[str, str] | None = None, version: str = "HTTP/1.1"
) -> bytes:
    headers = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    headers.update(extra_headers or {})
    lines = [f"GET {path} {version}"] + [f"{k}: {v}" for k, v in headers.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Frame:
    def __init__(self, fin: bool, rsv1: bool, opcode: int, payload: bytes) -> None:
        self.fin, self.rsv1, self.opcode, self.payload = fin, rsv1, opcode, payload

    def json(self) -> Any:
        return json.loads(self.payload)

    @property
    def close_code(self) -> int | None:
        return (
            struct.unpack("!H", self.payload[:2])[0] if self.opcode == 8 and len(self.payload) >= 2 else None
        )


class RawWebSocket:
    def __init__(
        self, port: int, appkey: str, headers: dict[str, str] | None = None, timeout: float = 5.0
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.sendall(upgrade_request(f"/v2?appkey={appkey}", headers))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            data += chunk
        head, _, self.buffer = data.partition(b"\r\n\r\n")
        self.status, self.headers = _parse_head(head)
        self._inflater: Any = None

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
        first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | opcode
        n = len(payload)
        mask_bit = 0x80 if mask else 0
        if n < 126:
            header = struct.pack("!BB", first, mask_bit | n)
        elif n < 65536:
            header = struct.pack("!BBH", first, mask_bit | 126, n)
        else:
            header = struct.pack("!BBQ", first, mask_bit | 127, n)
        if mask:
            key = os.urandom(4)
            masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if n < 4096 else _xor(payload, key)
            self.sock.sendall(header + key + masked)
        else:
            self.sock.sendall(header + payload)

    def send_json(self, pdu: Any, opcode: int = 1) -> None:
        self.send_frame(opcode, json.dumps(pdu).encode())

    def send_compressed_json(self, pdu: Any) -> None:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = compressor.compress(json.dumps(pdu).encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self.send_frame(1, data[:-4], rsv1=True)

    # --- receiving -----------------------------------------------------------------------------------
    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def recv_frame(self, timeout: float = 5.0) -> Frame:
        self.sock.settimeout(timeout)
        first, second = self._read(2)
        n = second & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        assert not second & 0x80, "server frames must not be masked"
        payload = self._read(n)
        rsv1 = bool(first & 0x40)
        if rsv1:
            inflater = zlib.decompressobj(-15)
            payload = inflater.decompress(payload + b"\x00\x00\xff\xff")
        return Frame(bool(first & 0x80), rsv1, first & 0x0F, payload)

    def recv_json(self, timeout: float = 5.0) -> Any:
        """The next data message, answering nothing and skipping control frames other than close."""
        while True:
            frame = self.recv_frame(timeout)
            if frame.opcode == 8:
                raise ConnectionError(f"closed with {frame.close_code}")
            if frame.opcode in (1, 2):
                return frame.json()

    def recv_close(self, timeout: float = 5.0) -> Frame:
        """Frames until the close frame (data frames before it are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv_frame(max(0.05, deadline - time.monotonic()))
            if frame.opcode == 8:
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


def _xor(data: bytes, key: bytes) -> bytes:
    n = len(data)
    mask = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ mask).to_bytes(n, "big")


def authenticate(ws: RawWebSocket, role: str, secret: str) -> str:
    """The auth exchange of PROTOCOL §3 over a raw socket; returns the connection id."""
    from app.auth import compute_hash

    ws.send_json(
        {"action": "auth/handshake", "id": 1, "body": {"method": "role_secret", "data": {"role": role}}}
    )
    data = ws.recv_json()["body"]["data"]
    nonce = data["nonce"]
    ws.send_json(
        {
            "action": "auth/authenticate",
            "id": 2,
            "body": {"method": "role_secret", "credentials": {"hash": compute_hash(secret, nonce)}},
        }
    )
    reply = ws.recv_json()
    assert reply["action"] == "auth/authenticate/ok", reply
    return data["connection_id"]
