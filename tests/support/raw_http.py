"""Bytes that are not HTTP, sent to a server's plain port, for the access-log tests."""

from __future__ import annotations

import socket

# The start of a TLS 1.2 ClientHello: record type 0x16, version 3.1, then binary.
TLS_HELLO = bytes.fromhex("160301020001000001fc0303") + bytes(range(32))


def send_raw(port: int, data: bytes) -> bytes:
    """Send ``data`` to 127.0.0.1:``port``; return everything the server answered before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer
