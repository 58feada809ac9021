"""A minimal Redis connection for the hot path: RESP encoding by hand, hiredis for parsing.

redis-py costs ~15 µs of Python per pipelined command; the publisher and the Pub/Sub reader move tens of
thousands of messages a second, so they talk RESP directly over a (gevent-patched) socket. Everything that is
not on the hot path (config store, history reads) uses redis-py.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import hiredis

ReplyError = hiredis.ReplyError


class RedisUnavailable(ConnectionError):
    """The Redis node cannot be reached or dropped the connection."""


def encode_command(*args: bytes | str | int) -> bytes:
    """RESP array of bulk strings: ``*N\\r\\n$len\\r\\narg\\r\\n...``."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        parts.append(b"$%d\r\n" % len(arg))
        parts.append(arg)
        parts.append(b"\r\n")
    return b"".join(parts)


class RedisAddress:
    """What a ``redis://``, ``rediss://`` or ``unix://`` URL says about reaching a node."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        query = parse_qs(parsed.query)
        self.url = url
        self.scheme = parsed.scheme
        self.username = unquote(parsed.username) if parsed.username else None
        self.password = unquote(parsed.password) if parsed.password else None
        if self.scheme == "unix":
            self.host, self.port, self.path = None, None, parsed.path
            self.db = int(query.get("db", ["0"])[0])
        elif self.scheme in ("redis", "rediss"):
            self.host, self.port, self.path = parsed.hostname or "localhost", parsed.port or 6379, None
            db_text = (parsed.path or "/").lstrip("/") or query.get("db", ["0"])[0]
            self.db = int(db_text)
        else:
            raise ValueError(f"unsupported Redis URL scheme: {url!r}")

    def __repr__(self) -> str:  # never print the password
        where = self.path if self.scheme == "unix" else f"{self.host}:{self.port}"
        return f"<Redis {self.scheme}://{where}/{self.db}>"


class RespConnection:
    """One socket to one Redis node. Not thread-safe; one greenlet reads, any greenlet may write."""

    def __init__(self, address: RedisAddress, connect_timeout: float = 2.0) -> None:
        self.address = address
        self.connect_timeout = connect_timeout
        self.sock: socket.socket | None = None
        # gevent's own non-blocking socket under a plain (not TLS) gevent socket, else None: see send().
        self._raw: Any = None
        self._reader = hiredis.Reader()

    def connect(self) -> None:
        addr = self.address
        try:
            if addr.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.connect_timeout)
                sock.connect(addr.path)
            else:
                sock = socket.create_connection((addr.host, addr.port), timeout=self.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if addr.scheme == "rediss":
                    sock = ssl.create_default_context().wrap_socket(sock, server_hostname=addr.host)
            sock.settimeout(None)
        except OSError as exc:
            raise RedisUnavailable(f"cannot connect to {addr!r}: {exc}") from None
        self.sock = sock
        self._raw = getattr(sock, "_sock", None) if addr.scheme != "rediss" else None
        self._reader = hiredis.Reader()
        handshake: list[tuple[Any, ...]] = []
        if addr.password:
            handshake.append(
                ("AUTH", addr.username, addr.password) if addr.username else ("AUTH", addr.password)
            )
        if addr.db:
            handshake.append(("SELECT", addr.db))
        for command in handshake:
            reply = self.call(*[a for a in command if a is not None])
            if isinstance(reply, ReplyError):
                self.close()
                raise RedisUnavailable(f"{command[0]} failed on {addr!r}: {reply}")

    def close(self) -> None:
        if self.sock is not None:
            self._raw = None
            try:
                self.sock.close()
            finally:
                self.sock = None

    def send(self, data: bytes) -> None:
        sock = self.sock
        if sock is None:
            raise RedisUnavailable("not connected")
        try:
            # One non-blocking send() first, which writes a batch whole unless the socket buffer is full:
            # gevent's sendall() costs a getsockopt() system call, a memoryview and clock reads per call
            # (once per publish batch: per publish when they come one at a time). The rest, if any, goes
            # through sendall(), which waits for the socket.
            raw = self._raw
            if raw is not None:
                try:
                    sent = raw.send(data)
                except BlockingIOError:
                    sent = 0
                if sent == len(data):
                    return
                data = memoryview(data)[sent:]
            sock.sendall(data)
        except OSError as exc:
            raise RedisUnavailable(str(exc)) from None

    def read_reply(self) -> Any:
        """The next reply; error replies are returned as :class:`ReplyError` values, not raised."""
        reader = self._reader
        reply = reader.gets()
        while reply is False:
            self._fill()
            reply = reader.gets()
        return reply

    def read_available(self) -> list[Any]:
        """Block for data, then return every complete reply it holds (at least one)."""
        reader = self._reader
        replies = []
        reply = reader.gets()
        while reply is False:
            self._fill()
            reply = reader.gets()
        while reply is not False:
            replies.append(reply)
            reply = reader.gets()
        return replies

    def wait_readable(self) -> None:
        """Block until the socket is readable, without reading: a caller that knows nothing is there yet
        (nothing asked, or just asked) saves the recv that would fail with EAGAIN before gevent waits.
        Only on a plain gevent socket (``_raw``); elsewhere (TLS may buffer decrypted bytes) the next read
        waits by itself."""
        sock = self.sock
        if sock is None:
            raise RedisUnavailable("not connected")
        if self._raw is not None:
            try:
                sock._wait(sock._read_event)  # gevent's wait on the watcher its recv uses after EAGAIN
            except OSError as exc:  # closed from another greenlet (retarget, the watchdog)
                raise RedisUnavailable(str(exc)) from None

    def _fill(self) -> None:
        """Block until data arrives and buffer it for the next replies; RedisUnavailable when the
        connection closed (by Redis, or by :meth:`close` from another greenlet)."""
        if self.sock is None:
            raise RedisUnavailable("not connected")
        try:
            data = self.sock.recv(65536)
        except OSError as exc:
            raise RedisUnavailable(str(exc)) from None
        if not data:
            raise RedisUnavailable("connection closed by Redis")
        self._reader.feed(data)

    def call(self, *args: bytes | str | int) -> Any:
        self.send(encode_command(*args))
        return self.read_reply()
