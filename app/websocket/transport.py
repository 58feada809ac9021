"""The I/O side of one upgraded connection, and the gevent-websocket handler that hands it over.

gevent-websocket's ``WebSocketHandler`` upgrades every request before the application runs, which leaves no
room for a 403 on an unknown app key, nor for subprotocol and permessage-deflate negotiation. Our handler
keeps its place in gevent's WSGI server and in gunicorn's worker, but lets the application decide: it puts an
``accept`` callable in the environ (``cobra.websocket.accept``), and the application calls it with the 101
headers once it has validated the request.

It also writes the access lines (logger ``app.access``, one per request; a WebSocket's when the connection
ends): gevent-websocket's own lines would go to the root logger for every request, static files included.
"""

from __future__ import annotations

import inspect
import logging
import socket
from collections.abc import Callable
from io import BytesIO
from types import FunctionType, MethodType
from typing import TYPE_CHECKING, Any

import gevent
import gevent.socket
from gevent.pywsgi import WSGIHandler
from geventwebsocket.handler import WebSocketHandler

from ..logs import ACCESS_LOGGER, printable
from .frames import OP_TEXT, Event, MessageReader, ProtocolError, compress_message, encode_frame
from .handshake import DeflateParams, Upgrade, is_websocket_request
from .http_head import (
    HEAD_TOO_LARGE_RESPONSE,
    OVER_CAPACITY_RESPONSE,
    REQUEST_TIMEOUT_RESPONSE,
    HeadTooLarge,
    framing_problem,
    read_header_block,
)

if TYPE_CHECKING:
    from ..edge_guard import EdgeGuard, PreauthTicket

ACCEPT_KEY = "cobra.websocket.accept"
PREAUTH_KEY = "cobra.preauth"  # the socket's PreauthTicket, released once its WebSocket authenticates
# What a WSGI environ keeps once its request became a WebSocket (CobraWebSocketHandler._release_request).
KEPT_AFTER_UPGRADE = (
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    ACCEPT_KEY,
    PREAUTH_KEY,
)
RECV_SIZE = 65536
CLOSED_READER = BytesIO()  # what an upgraded handler keeps in place of its HTTP reader
CLOSED_READER.close()

access_log = logging.getLogger(ACCESS_LOGGER)


class ConnectionClosed(Exception):
    """The peer went away (EOF or a socket error)."""


class WebSocket:
    """Reads client events from, and encodes server messages for, one upgraded socket.

    Writing is left to the owner (the connection's writer greenlet), so that a slow client never blocks the
    greenlet that produced the data.
    """

    __slots__ = (
        "_compress_min_size",
        "_failed",
        "_leftover",
        "_reader",
        "_wait_first",
        "deflate",
        "socket",
        "subprotocol",
        "window_bits",
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
        self.window_bits = upgrade.deflate.server_max_window_bits if upgrade.deflate else 15
        self._compress_min_size = compress_min_size
        self._leftover = leftover
        self._failed = False
        # Whether the next read waits for the socket to be readable before its recv (see receive): False
        # or True on a plain gevent socket, None where that is unsafe (a TLS socket may hold decrypted
        # bytes its file descriptor does not show; anything else lacks gevent's read watcher).
        self._wait_first: bool | None = False if type(sock) is gevent.socket.socket else None

    def receive(self) -> list[Event]:
        """Block until at least one byte arrives; return the events completed by it (maybe none)."""
        if self._leftover:
            data, self._leftover = self._leftover, b""
            try:
                return self._reader.feed(data)
            except ProtocolError:
                self._failed = True
                raise
        sock = self.socket
        try:
            if self._wait_first:
                sock._wait(sock._read_event)  # gevent's wait on the watcher its recv uses after EAGAIN
            data = sock.recv(RECV_SIZE)
        except OSError as exc:  # abort() from another greenlet cancels the wait with an OSError too
            raise ConnectionClosed(str(exc)) from None
        if not data:
            raise ConnectionClosed("end of stream")
        if self._failed:
            # After a protocol error the rest of the stream is discarded unparsed while our close frame
            # waits for its answer: a client still sending its oversized message reads our 1009 instead of
            # a reset, and nothing it sends is kept.
            return []
        try:
            events = self._reader.feed(data)
        except ProtocolError:
            self._failed = True
            raise
        # A short read that held one message at most is a client waiting for its answer (an ack-gated
        # publisher): by the next read it has most likely sent nothing yet, and trying recv first would
        # only fail with EAGAIN (a system call and an exception per message) before gevent waits anyway.
        # A client that pipelines fills reads with several messages and keeps the plain recv.
        if self._wait_first is not None:
            self._wait_first = len(data) < RECV_SIZE and len(events) <= 1
        return events

    def encode_message(self, payload: bytes, opcode: int = OP_TEXT) -> bytes:
        """A text (or ``opcode``) frame for ``payload``, compressed when deflate was agreed and the message
        is big enough to gain from it (RFC 7692 lets each message choose)."""
        if self.deflate is not None and len(payload) >= self._compress_min_size:
            return encode_frame(opcode, compress_message(payload, self.window_bits), compressed=True)
        return encode_frame(opcode, payload)

    def set_message_limit(self, max_message_size: int) -> None:
        """The largest message from now on: small before authentication, the broker's limit after."""
        self._reader.max_message_size = max_message_size


def take_over_socket(sock: socket.socket, rfile: Any, no_delay: bool = True) -> bytes:
    """Make an upgraded connection's socket the WebSocket's: return the bytes a client sent right behind its
    handshake (they sit in the HTTP reader's buffer; taken without blocking), close that reader (its 8 KiB
    buffer is a third of what an idle connection costs) and turn Nagle off (``no_delay``: our handler did
    at accept)."""
    try:
        sock.setblocking(False)
        leftover = rfile.read1(RECV_SIZE) or b""
    except OSError:
        leftover = b""
    finally:
        sock.setblocking(True)
        rfile.close()
    if no_delay:
        _no_delay(sock)  # the stock handler of gevent-websocket did not run our handle()
    return leftover


def access_line(
    remote: str, request_line: str, status: str, length: int, seconds: float, problem: str = ""
) -> str:
    """``127.0.0.1 "GET /health/ HTTP/1.1" 200 122 0.000108`` (bytes sent, headers included; seconds).

    The request line is client input, read as latin-1: a real one is ASCII, so anything else (a TLS hello on
    the plain port) is written as ``\\xNN`` escapes."""
    line = f'{remote or "-"} "{_ascii(request_line)}" {status} {length or "-"} {seconds:.6f}'
    return f"{line} ({_ascii(problem)})" if problem else line


def _ascii(text: str) -> str:
    return printable(text).encode("ascii", "backslashreplace").decode("ascii")


class HandlerState:
    """What our handler adds to gevent's, in one attribute. pywsgi's handler sets 28 attributes of its own
    per request; past 30, CPython gives up the compact shared-key layout of an instance's dict, and the
    dict of every upgraded connection's handler (alive as long as the connection) took 1.3 KB more."""

    __slots__ = ("bad_request", "edge", "head_timer", "requests_read", "ticket")

    def __init__(self) -> None:
        self.bad_request = ""  # what gevent found wrong with the current request, for its access line
        self.edge: EdgeGuard | None = None
        self.ticket: PreauthTicket | None = None
        self.head_timer: gevent.Timeout | None = None
        self.requests_read = 0


class CobraWebSocketHandler(WebSocketHandler):
    """gevent-websocket's handler with the upgrade decision moved into the application, and the limits of
    an anonymous socket (:class:`~app.edge_guard.EdgeGuard`) when the application has an ``edge``: caps
    checked at accept, one deadline for each request head, the keep-alive wait between requests, a header
    block read within its budget."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._state = HandlerState()

    def MessageClass(self, *args: Any) -> Any:  # gevent's name for it
        """gevent's header parsing, then :func:`framing_problem`: a ValueError raised here becomes gevent's
        400 and close, without a traceback (``WSGIHandler._handle_client_error``)."""
        edge = self._state.edge
        if edge is not None and args:
            settings = edge.settings
            block = read_header_block(args[0], settings.http_max_header_bytes, settings.http_max_headers)
            args = (BytesIO(block), *args[1:])
        headers = WSGIHandler.MessageClass(self, *args)
        problem = framing_problem(headers)
        if problem is not None:
            raise ValueError(problem)
        return headers

    def handle(self) -> None:
        # Every reply is small and complete when written: no Nagle delay on any connection. pywsgi writes a
        # keep-alive response in two sends (head, then body), and Nagle held the second one until the
        # client's delayed ACK: 40 ms per request on a kept-alive connection (HTTP publishing, the panel).
        _no_delay(self.socket)
        state = self._state
        edge = state.edge = getattr(getattr(self.server, "application", None), "edge", None)
        if edge is not None:
            address = self.client_address
            ticket = edge.admit(address[0] if isinstance(address, tuple) else str(address or ""))
            if ticket is None:
                self._refuse_over_capacity()
                return
            state.ticket = ticket
        try:
            super().handle()
        finally:
            if state.ticket is not None:
                state.ticket.release()

    def _refuse_over_capacity(self) -> None:
        """Over a cap of unauthenticated sockets: a 503 if the socket takes it at once, then close, before
        reading anything (the socket's greenlet and pool slot are back within one loop turn)."""
        try:
            self.socket.send(OVER_CAPACITY_RESPONSE, 0, 0.0)  # gevent: timeout 0.0 = never wait
        except OSError:
            pass
        try:
            self.socket.close()
        except OSError:
            pass
        self.__dict__.pop("socket", None)
        self.__dict__.pop("rfile", None)

    def handle_one_request(self) -> Any:
        """One request, its head within ``http_head_timeout`` (counted from accept for the first request,
        from its first byte for the next ones, which come within the keep-alive time or not at all). The
        application runs outside that deadline (:meth:`read_request` ends it)."""
        state = self._state
        edge = state.edge
        if edge is None:
            return super().handle_one_request()
        if state.requests_read and not self._next_request_arrives(edge.keepalive):
            return None  # idle keep-alive connection: closed
        state.requests_read += 1
        # The timer is held by the state only, not by a local of this frame: an upgraded connection runs
        # inside this call, and _release_request lets the timer go (its objects cost ~250 B a connection).
        state.head_timer = gevent.Timeout(edge.settings.http_head_timeout)
        state.head_timer.start()
        try:
            return super().handle_one_request()
        except gevent.Timeout as exc:
            if exc is not state.head_timer:
                raise
            state.bad_request = f"request head not complete within {edge.settings.http_head_timeout:g} s"
            return ("408", REQUEST_TIMEOUT_RESPONSE)
        finally:
            timer, state.head_timer = state.head_timer, None
            if timer is not None:
                timer.close()

    def _next_request_arrives(self, keepalive: float) -> bool:
        """Whether a next request starts within ``keepalive`` seconds (bytes already buffered count)."""
        if keepalive <= 0 or self.rfile.closed:
            return False
        with gevent.Timeout(keepalive, False):
            try:
                return bool(self.rfile.peek(1))
            except (OSError, ValueError):
                return False
        return False

    def read_request(self, raw_requestline: str) -> Any:
        try:
            return super().read_request(raw_requestline)
        finally:
            timer = self._state.head_timer
            if timer is not None:  # the head is in: the application is not under its deadline
                timer.close()

    def _handle_client_error(self, ex: Exception) -> Any:
        if isinstance(ex, HeadTooLarge):
            self.log_error("%s", str(ex))
            return ("431", HEAD_TOO_LARGE_RESPONSE)
        return super()._handle_client_error(ex)

    def run_application(self) -> Any:
        if is_websocket_request(self.environ):
            self.environ[ACCEPT_KEY] = self._accept
            ticket = self._state.ticket
            if ticket is not None:
                self.environ[PREAUTH_KEY] = ticket
        self.application = direct_call(self.application)
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
        leftover = take_over_socket(self.socket, self.rfile, no_delay=False)
        self._release_request()
        return WebSocket(self.socket, upgrade, max_message_size, compress_min_size, leftover)

    def _release_request(self) -> None:
        """Drop what only the HTTP request needed, once the 101 is sent. The connection then lives for hours
        in this handler's greenlet, whose frames keep the handler and the environ alive: the parsed header
        block, the environ's copies of every header and the 101's encoded headers were ~5 KB of each idle
        connection's ~20 KB. The environ keeps the request line's parts, the peer's address and our own
        keys (the application may still read those); pywsgi reads none of the rest after the response
        started (its error path passes the environ on, its access line is ours)."""
        environ = self.environ
        kept = {key: environ[key] for key in KEPT_AFTER_UPGRADE if key in environ}
        environ.clear()  # frees the table: a dict keeps its size when keys are only deleted
        environ.update(kept)
        self.headers = None
        self.response_headers = []
        self._state.head_timer = None  # closed by read_request when the head was in
        # take_over_socket closed the HTTP reader; a closed stand-in lets its objects go (~400 B)
        self.rfile = CLOSED_READER
        if self.wsgi_input is not None:
            self.wsgi_input.rfile = CLOSED_READER

    def log_error(self, msg: str, *args: Any) -> None:
        """gevent reports invalid client input here (a request line that is not HTTP, a broken chunked
        body); it goes into that request's access line instead of a raw line of its own on stderr."""
        # gevent's two calls pass (client_address, message): the address is on the access line already
        self._state.bad_request = str(args[-1]) if args else msg

    def log_request(self) -> None:
        """The access line of the request that just ended, when the access log is on (``access_log``)."""
        state = self._state
        problem, state.bad_request = state.bad_request, ""
        if not access_log.isEnabledFor(logging.INFO):
            return
        address = self.client_address
        remote = address[0] if isinstance(address, tuple) else str(address or "")
        status = self.status.decode("latin-1") if isinstance(self.status, bytes) else str(self.status or "")
        code = status.split(" ", 1)[0]
        if not code.isdigit():  # "socket error: ..." when the client left mid-response
            problem = problem or status
            code = str(abs(getattr(self, "code", 0) or 0)).zfill(3)
        seconds = max(0.0, (self.time_finish or 0.0) - (self.time_start or 0.0))
        line = access_line(remote, self.requestline or "", code, self.response_length, seconds, problem)
        fields = {"remote_addr": remote, "status": code, "duration": round(seconds, 6)}  # for JSON lines
        access_log.info("%s", line, extra=fields)


AcceptWebSocket = Callable[[Upgrade, int, int], WebSocket]


def direct_call(application: Any) -> Any:
    """An application object's Python ``__call__`` as a bound method. CPython 3.11 runs a call of a bound
    Python function in the caller's evaluation loop, but calling an *instance* goes through C into a new
    one: its C frame then sits in the saved stack of every connection's greenlet (~750 bytes each,
    measured), since the connection runs inside the application call."""
    call = inspect.getattr_static(type(application), "__call__", None)
    if isinstance(call, FunctionType):
        return MethodType(call, application)
    return application


def _no_delay(sock: Any) -> None:
    """Replies must not wait for the client's next packet (Nagle + delayed ACK doubled the median publish
    ack latency on WebSockets)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # a Unix-domain socket (gunicorn can bind one) has no Nagle to turn off
