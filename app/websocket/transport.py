"""The I/O side of one upgraded connection, and the gevent-websocket handler that hands it over.

gevent-websocket's ``WebSocketHandler`` upgrades every request before the application runs, which leaves no
room for a 403 on an unknown app key, nor for subprotocol and permessage-deflate negotiation. Our handler
keeps its place in gevent's WSGI server and in gunicorn's worker, but lets the application decide: it puts an
``accept`` callable in the environ (``cobra.websocket.accept``), and the application calls it with the 101
headers once it has validated the request.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from gevent.pywsgi import WSGIHandler
from geventwebsocket.handler import WebSocketHandler

from .frames import OP_TEXT, Event, MessageReader, compress_message, encode_frame
from .handshake import DeflateParams, Upgrade, is_websocket_request

ACCEPT_KEY = "cobra.websocket.accept"
RECV_SIZE = 65536


class ConnectionClosed(Exception):
    """The peer went away (EOF or a socket error)."""


class WebSocket:
    """Reads client events from, and encodes server messages for, one upgraded socket.

    Writing is left to the owner (the connection's writer greenlet), so that a slow client never blocks the
    greenlet that produced the data.
    """

    __slots__ = (
        "_compress_min_size",
        "_leftover",
        "_reader",
        "_window_bits",
        "deflate",
        "socket",
        "subprotocol",
    )

    def __init__(
        self,
        sock: socket.socket,
        upgrade: Upgrade,
        max_message_size: int,
        compress_min_size: int,
        leftover: bytes = b"",
    ) -> None:
        self.socket = sock
        self.deflate: DeflateParams | None = upgrade.deflate
        self.subprotocol = upgrade.subprotocol
        # A CBOR connection may send CBOR in text frames (the Satori Python SDK does): no UTF-8 check there.
        self._reader = MessageReader(
            max_message_size, upgrade.deflate, check_utf8=upgrade.subprotocol != "cbor"
        )
        self._window_bits = upgrade.deflate.server_max_window_bits if upgrade.deflate else 15
        self._compress_min_size = compress_min_size
        self._leftover = leftover

    def receive(self) -> list[Event]:
        """Block until at least one byte arrives; return the events completed by it (maybe none)."""
        if self._leftover:
            data, self._leftover = self._leftover, b""
            return self._reader.feed(data)
        try:
            data = self.socket.recv(RECV_SIZE)
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from None
        if not data:
            raise ConnectionClosed("end of stream")
        return self._reader.feed(data)

    def encode_message(self, payload: bytes, opcode: int = OP_TEXT) -> bytes:
        """A text (or ``opcode``) frame for ``payload``, compressed when deflate was agreed and the message
        is big enough to gain from it (RFC 7692 lets each message choose)."""
        if self.deflate is not None and len(payload) >= self._compress_min_size:
            return encode_frame(opcode, compress_message(payload, self._window_bits), compressed=True)
        return encode_frame(opcode, payload)


class CobraWebSocketHandler(WebSocketHandler):
    """gevent-websocket's handler with the upgrade decision moved into the application."""

    def run_application(self) -> Any:
        if is_websocket_request(self.environ):
            self.environ[ACCEPT_KEY] = self._accept
        return WSGIHandler.run_application(self)

    def _accept(self, upgrade: Upgrade, max_message_size: int, compress_min_size: int) -> WebSocket:
        """Send the 101 and return the upgraded socket (PROTOCOL §1)."""
        self.start_response("101 Switching Protocols", upgrade.response_headers())
        # The connection now belongs to the WebSocket: no Content-Length, no chunking, no keep-alive.
        self.provided_content_length = False
        self.response_use_chunked = False
        self.close_connection = True
        self.provided_date = True
        self.write(b"")
        leftover = self._drain_read_buffer()
        try:
            # Replies are small and must not wait for the client's next packet (Nagle + delayed ACK
            # doubled the median publish ack latency).
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # a Unix-domain socket (gunicorn can bind one) has no Nagle to turn off
        return WebSocket(self.socket, upgrade, max_message_size, compress_min_size, leftover)

    def _drain_read_buffer(self) -> bytes:
        """Bytes a client sent right behind its handshake sit in the HTTP reader's buffer; take them
        without blocking, then read the socket directly from now on. Closing the reader frees its 8 KiB
        buffer, a third of what an idle connection costs."""
        sock = self.socket
        try:
            sock.setblocking(False)
            return self.rfile.read1(RECV_SIZE) or b""
        except OSError:
            return b""
        finally:
            sock.setblocking(True)
            self.rfile.close()


AcceptWebSocket = Callable[[Upgrade, int, int], WebSocket]
