"""One client connection's transport: frames in and out, the bounded send queue, the closing handshake.

The reader loop runs in the WSGI handler's greenlet and hands each request, one at a time and in order, to
the dispatcher (:func:`app.actions.dispatch`) with the connection's :class:`~app.session.Session`, which
holds everything about the client that is not transport. Replies and pushes are queued and written without
blocking the greenlet that produced them, so the Pub/Sub reader that fans messages out never waits for a
slow client: when a client's queue passes ``send_queue_max_bytes`` its subscriptions' queued pushes are shed
first (PROTOCOL §7, :mod:`app.shedding`), and it is disconnected only when that is not enough. The
connection is the :class:`~app.subscription.Sink` of its subscriptions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
from gevent.event import Event
from gevent.ssl import SSLSocket

from . import codec, protocol, shedding, slow_consumer
from .actions import dispatch, drop_subscriptions
from .actions.narrowing import end_disallowed_subscriptions
from .models import App
from .protocol import PUSH_HEAD
from .websocket import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    CloseHandshake,
    CloseState,
    ConnectionClosed,
    Keepalive,
    ProtocolError,
    WebSocket,
    encode_frame,
    text_frame_header,
)
from .websocket.frames import compressed_push_frame

if TYPE_CHECKING:
    from .services import Services
    from .session import Session
    from .subscription import Subscription

log = logging.getLogger(__name__)

# Seconds the writer may take to get what is queued (our close frame included) onto a slow socket.
FLUSH_TIMEOUT = 2.0
# A writer greenlet costs ~11 KiB while parked: it ends after this long without anything to write and is
# started again by the next frame, so idle connections cost no writer at all.
WRITER_IDLE_TIMEOUT = 5.0
PUSH_HEAD_SIZE = len(PUSH_HEAD)


# Text frame headers by payload size: the pushes of a channel come in a few sizes, so a lookup replaces
# two calls and a struct.pack per push (~6 % of a 1,000-subscriber fan-out's CPU, profiled). Bounded: it
# is emptied when it holds _PUSH_HEADERS_MAX sizes.
_PUSH_HEADERS: dict[int, bytes] = {}
_PUSH_HEADERS_MAX = 4096


def _push_header(size: int) -> bytes:
    if len(_PUSH_HEADERS) >= _PUSH_HEADERS_MAX:
        _PUSH_HEADERS.clear()
    header = _PUSH_HEADERS[size] = text_frame_header(size)
    return header


class FlushQueue:
    """The connections with frames to write, written together once their producer is done.

    A producer is the greenlet that queued the frames: the Pub/Sub reader after routing one read's
    messages, the publisher after one batch of replies (the engine calls :meth:`flush` then), or any other
    greenlet, whose frames go out from an event-loop callback once it yields. Flushing at the end of a
    reader's batch rather than in the loop callback sends a subscriber its message before the event loop
    turns to other greenlets (measured: ~20 us less latency per ack-gated message)."""

    def __init__(self) -> None:
        self._pending: list[Connection] = []
        self._scheduled = False

    def add(self, conn: Connection) -> None:
        self._pending.append(conn)
        if not self._scheduled:
            self._scheduled = True
            gevent.get_hub().loop.run_callback(self._on_loop)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for conn in pending:
            conn._flush()

    def _on_loop(self) -> None:
        self._scheduled = False
        self.flush()


class Connection:
    """A JSON connection (text frames out); :class:`app.cbor_connection.CborConnection` when the client
    chose ``cbor``."""

    encoding = "json"
    parse_request = staticmethod(protocol.parse_request)
    # Subscriptions hand each push over with themselves and its message count (app.subscription).
    tracks_pushes = True

    __slots__ = (
        "__weakref__",
        "_closing",
        "_compress_from",
        "_direct",
        "_epoch",
        "_flush_queue",
        "_flush_scheduled",
        "_on_closed",
        "_owners",
        "_queue",
        "_queue_limit",
        "_queued_bytes",
        "_quiesced",
        "_wake",
        "_writer",
        "handshake",
        "id",
        "keepalive",
        "services",
        "session",
        "ws",
    )

    def __new__(cls, ws: WebSocket, *args: object, **kwargs: object) -> Connection:
        # The sub-protocol agreed in the handshake decides the class, so the broker builds every
        # connection the same way and the JSON one keeps its hot path free of any encoding test.
        if cls is Connection and ws.subprotocol == codec.SUBPROTOCOL:
            from .cbor_connection import CborConnection  # imported once, by the first CBOR client

            cls = CborConnection
        return object.__new__(cls)

    def __init__(
        self,
        ws: WebSocket,
        session: Session,
        services: Services,
        flush_queue: FlushQueue,
        on_closed: Callable[[Connection], None],
    ) -> None:
        self.ws = ws
        self.session = session
        self.services = services  # handed to the dispatcher with each request
        self.id = session.id
        self._flush_queue = flush_queue
        self._on_closed = on_closed  # once the reader loop ended: the broker forgets the connection
        settings = services.config.settings
        # The RFC 6455 closing handshake and the ping timing, as sans-I/O state machines; this class does
        # the I/O they ask for. ``_closing`` mirrors "our close frame is queued or the socket is gone" for
        # the hot path (one attribute test per push instead of a property call).
        self.handshake = CloseHandshake()
        self.keepalive = Keepalive(settings.ping_interval, settings.ping_timeout, time.monotonic())
        # Lists, not deques: an empty list holds no buffer (clear() frees it), an empty deque a 512-byte
        # block whatever it holds, and every idle connection has two empty queues (~1.4 KB saved each).
        # Only whole queues are taken, so nothing is ever removed from the front.
        self._queue: list[bytes] = []
        # Parallel to _queue: the subscription each push belongs to, None for any other frame. ``_epoch``
        # moves on whenever the queue is taken for writing: a subscription's ``queued`` count is only
        # worth something while its ``queued_epoch`` is the current one (no walk over them per write).
        self._owners: list[Subscription | None] = []
        self._epoch = 0
        self._queued_bytes = 0
        self._wake = Event()
        self._closing = False
        self._quiesced = False
        self._writer: gevent.Greenlet | None = None
        self._flush_scheduled = False
        self._queue_limit = services.limits.send_queue_limit(session.app)
        # Pushes at least this big are compressed (when deflate was agreed); None = never.
        self._compress_from = settings.deflate_min_size if ws.deflate is not None else None
        # Non-blocking writes from the event loop need a plain socket; TLS goes through the writer greenlet.
        self._direct = not isinstance(ws.socket, SSLSocket)

    def app_settings_changed(self, app: App) -> None:
        """An admin changed this connection's app: limits cached on the hot path follow at once, and the
        subscriptions a narrowed role no longer allows end."""
        self._queue_limit = self.services.limits.send_queue_limit(app)
        end_disallowed_subscriptions(self.session, self.services)

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def queued_bytes(self) -> int:
        """Bytes queued for this client, not yet written: a paged replay waits on it (app.engine.paging)."""
        return self._queued_bytes

    # ------------------------------------------------------------------ the reader loop
    def run(self) -> None:
        try:
            self._read_loop()
        finally:
            self._cleanup()

    def _read_loop(self) -> None:
        ws = self.ws
        session, services = self.session, self.services
        parse = self.parse_request
        while not self._closing:
            try:
                events = ws.receive()
            except ProtocolError as exc:
                log.info(
                    "connection %s: protocol error (%d): %s",
                    self.id,
                    exc.code,
                    exc.reason,
                    extra={"connection_id": self.id},
                )
                self.close(exc.code, exc.reason)
                break
            except ConnectionClosed:
                return
            self.keepalive.received(time.monotonic())
            for opcode, payload in events:
                if opcode in (OP_TEXT, OP_BINARY):
                    # After our close frame data is ignored (RFC 6455 §1.4); while the server shuts down,
                    # requests are no longer taken, so nothing is stored that will not be acknowledged.
                    if not self._closing and not self._quiesced:
                        dispatch(session, payload, services, self, parse)
                elif opcode == OP_PING:
                    self._enqueue(encode_frame(OP_PONG, payload))
                elif opcode == OP_CLOSE:
                    self._on_close_frame(payload)
                    return
                # OP_PONG: hearing anything is all the keepalive needs
        self._await_close()

    def _on_close_frame(self, payload: bytes) -> None:
        """The client closes (first, or answering ours): the handshake says what to echo (§5.5.1)."""
        answer = self.handshake.receive_close(payload)
        if answer is not None:
            self._enqueue(answer)
        self._closing = True
        self._flush_and_stop_writer()

    def _await_close(self) -> None:
        """After sending our close frame, read until the client's close frame or the handshake's deadline."""
        self._flush_and_stop_writer()
        handshake = self.handshake
        remaining = (handshake.deadline or 0.0) - time.monotonic()
        with gevent.Timeout(max(0.0, remaining), False):
            while not handshake.closed:
                try:
                    events = self.ws.receive()
                except (ConnectionClosed, ProtocolError):
                    return
                for opcode, payload in events:
                    if opcode == OP_CLOSE:
                        handshake.receive_close(payload)

    # ------------------------------------------------------------------ sending
    # Frames are queued, then written by one non-blocking send when the greenlet that queued them yields
    # (an event-loop callback): everything a Pub/Sub read batch produced for this client goes out in one
    # system call, and no greenlet is involved while the client keeps up. Only when the socket is full does a
    # writer greenlet take over, wait for the client, and leave once the queue is empty.
    def send_payload(self, payload: bytes) -> None:
        """Queue one PDU (JSON bytes) for this client."""
        if not self._closing:
            self._enqueue(self.ws.encode_message(payload))

    def send_push(
        self,
        counter: int,
        subscription_part: bytes,
        tail: bytes,
        owner: Subscription | None = None,
        count: int = 0,
    ) -> None:
        """Queue a subscription push, framed in one copy (the hot path of a fan-out); ``owner`` (the
        subscription) and ``count`` (its messages) let the push be shed (PROTOCOL §7)."""
        if self._closing:
            return
        number = b"%d" % counter
        size = PUSH_HEAD_SIZE + len(number) + len(subscription_part) + len(tail)
        if self._compress_from is not None and size >= self._compress_from:
            # the tail is compressed once per publish, not once per subscription (SECURITY.md)
            prefix = b"".join((PUSH_HEAD, number, subscription_part))
            frame = compressed_push_frame(OP_TEXT, prefix, tail, self.ws.window_bits)
        else:
            header = _PUSH_HEADERS.get(size)
            if header is None:
                header = _push_header(size)
            frame = b"".join((header, PUSH_HEAD, number, subscription_part, tail))
        self._enqueue(frame, owner, count)

    def send_ping(self) -> None:
        if not self._closing:
            self._enqueue(encode_frame(OP_PING, b""))

    def _enqueue(self, frame: bytes, owner: Subscription | None = None, count: int = 0) -> None:
        self._queue.append(frame)
        self._owners.append(owner)
        self._queued_bytes += len(frame)
        if owner is not None:
            if owner.queued_epoch == self._epoch:
                owner.queued += count
            else:
                owner.queued_epoch = self._epoch
                owner.queued = count
        if self._queued_bytes > self._queue_limit and not self._closing and not self._shed():
            self._on_slow_consumer()
        elif self._writer is not None:
            if not self._wake.is_set():
                self._wake.set()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            if self._direct:
                self._flush_queue.add(self)
            else:
                self._writer = gevent.spawn(self._write_loop)

    def _flush(self) -> None:
        """Write what is queued without blocking (from the FlushQueue); hand any rest to a writer."""
        self._flush_scheduled = False
        queue = self._queue
        if self._writer is not None or not queue:
            return
        data = queue.pop() if len(queue) == 1 else b"".join(queue)
        queue.clear()
        self._owners.clear()
        self._epoch += 1
        try:
            # The gevent socket's own non-blocking socket (what its send() calls first): a full buffer
            # raises BlockingIOError either way, and the wrapper's frame (~150 ns per write, measured)
            # is not paid once per subscriber per message.
            sent = self.ws.socket._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._queued_bytes = 0
            self.abort()
            return
        if sent == len(data):
            self._queued_bytes = 0
            return
        rest = data[sent:]
        queue.append(rest)
        self._owners.append(None)  # partly written: whatever pushes it holds can no longer be shed
        self._queued_bytes = len(rest)
        self._writer = gevent.spawn(self._write_loop)

    def _shed(self) -> bool:
        """The queue passed its limit: shed the queued pushes (PROTOCOL §7, :mod:`app.slow_consumer`).
        True when the queue is back within its limit; False: the connection must go."""
        session, services = self.session, self.services
        queued = slow_consumer.shed(self._queue, self._owners, session, services, self._notice_frame)
        if queued is None:
            return False
        self._epoch += 1  # what subscriptions counted as queued is gone
        self._queued_bytes = queued
        return not shedding.over_limit(queued, self._queue_limit)

    def _notice_frame(self, payload: bytes) -> bytes:
        """A notice PDU (JSON bytes) framed for this connection."""
        return self.ws.encode_message(payload)

    def _on_slow_consumer(self) -> None:
        limit = self._queue_limit
        log.warning(
            "connection %s: slow consumer, over %d bytes queued; disconnecting",
            self.id,
            limit,
            extra={"connection_id": self.id},
        )
        self.services.stats.slow_consumer_disconnects += 1
        self._queue.clear()
        self._owners.clear()
        self._epoch += 1
        self._queued_bytes = 0
        self.close(CLOSE_POLICY_VIOLATION, "slow consumer")

    def _write_loop(self) -> None:
        queue = self._queue
        owners = self._owners
        wake = self._wake
        sock = self.ws.socket
        try:
            while True:
                wake.clear()
                while queue:
                    # Everything queued since the last write goes out in one system call.
                    if len(queue) == 1:
                        data = queue.pop()
                    else:
                        data = b"".join(queue)
                        queue.clear()
                    owners.clear()
                    self._epoch += 1
                    self._queued_bytes = 0
                    sock.sendall(data)
                if self._closing:
                    return
                # With direct writes the writer is only needed while the client is behind. Over TLS
                # (no non-blocking write from the event loop) it parks a while for the next frames.
                if self._direct or (not wake.wait(WRITER_IDLE_TIMEOUT) and not queue):
                    self._writer = None
                    return
        except OSError:
            self.abort()

    def _flush_and_stop_writer(self, timeout: float = FLUSH_TIMEOUT) -> None:
        writer = self._writer
        if writer is None and self._queue:
            writer = self._writer = gevent.spawn(self._write_loop)
        if writer is not None and not writer.dead:
            if not self._wake.is_set():
                self._wake.set()
            writer.join(timeout)
            writer.kill(block=False)

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Start the closing handshake: our close frame goes after everything already queued."""
        frame = self.handshake.send_close(code, reason, now=time.monotonic())
        if frame is None:
            return  # already closing or closed
        self._enqueue(frame)
        self._closing = True
        # A client that never answers our close frame (or never reads) is cut off at the deadline. The
        # timer tests the state, not the clock: gevent's timers run on the loop's cached time.
        gevent.spawn_later(self.handshake.timeout, self._abort_if_unanswered)

    def _abort_if_unanswered(self) -> None:
        if self.handshake.state is CloseState.CLOSING:
            self.abort()

    @property
    def close_code(self) -> int | None:
        """The code of the close frame we sent, if any."""
        return self.handshake.sent_code

    def abort(self) -> None:
        """Drop the TCP connection now (a dead or hopelessly slow client)."""
        self.handshake.abort()
        self._closing = True
        try:
            self.ws.socket.shutdown(2)
        except OSError:
            pass

    def quiesce(self) -> None:
        """Stop taking requests; replies to those already taken still go out (graceful shutdown)."""
        self._quiesced = True

    def shutdown(self) -> None:
        """Server shutdown: close with 1001 "going away" (PROTOCOL §1)."""
        self.close(CLOSE_GOING_AWAY, "server shutting down")

    # ------------------------------------------------------------------ end
    def _cleanup(self) -> None:
        self.handshake.connection_lost()
        self._closing = True
        try:
            drop_subscriptions(self.session, self.services)  # nothing is sent here any more
        finally:
            if self._writer is not None:
                self._writer.kill(block=False)
            self._on_closed(self)
