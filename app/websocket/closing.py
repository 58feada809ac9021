"""The closing handshake of RFC 6455 §7, sans I/O: who closed first, what to answer, when to give up.

:class:`CloseHandshake` is told what happened (we close, the peer's close frame arrived, the transport is
gone) with the time passed in, and answers with bytes to send and with state the I/O layer acts on: whether
data may still be sent or taken, whether the TCP connection should be dropped now. It never touches a socket.

Costs: a handful of slots per connection; nothing is buffered.
"""

from __future__ import annotations

import enum

from .frames import CLOSE_NORMAL, ProtocolError, encode_close, parse_close_payload

# Seconds the peer has, after we started the handshake, to answer with its own close frame before the TCP
# connection is dropped (§7.1.1 lets the server close it first; a peer that never reads must not hold it).
CLOSE_TIMEOUT = 4.0
CLOSE_NO_STATUS = 1005  # §7.4.1: "no status code was present"; never put on the wire
CLOSE_ABNORMAL = 1006  # §7.1.5: the connection ended without a close frame; never put on the wire


class CloseState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"  # our close frame is sent, the peer's has not come yet (§7.1.2)
    CLOSED = "closed"  # the handshake is over, or the connection was dropped: close TCP (§7.1.1)


class CloseHandshake:
    """The closing handshake of one connection (server side)."""

    __slots__ = ("deadline", "dropped", "peer_closed_first", "received_code", "sent_code", "state", "timeout")

    def __init__(self, timeout: float = CLOSE_TIMEOUT) -> None:
        self.timeout = timeout
        self.state = CloseState.OPEN
        self.sent_code: int | None = None  # the code of our close frame, once sent
        self.received_code: int | None = None  # the peer's code (1005 for an empty close frame)
        self.peer_closed_first: bool | None = None  # None while nobody closed
        self.deadline: float | None = None  # when we stop waiting for the peer's close frame
        self.dropped = False  # ended without a complete handshake

    # ------------------------------------------------------------------ what the I/O layer asks
    @property
    def may_send_data(self) -> bool:
        """§5.5.1: after sending a close frame an endpoint sends no more data frames."""
        return self.state is CloseState.OPEN

    @property
    def accepts_data(self) -> bool:
        """Messages that arrive after our close frame are ignored: their replies could not be sent any more
        (§5.5.1), and a request acted upon without its reply would look lost to the client (§1.4: after a
        close, a peer discards further data)."""
        return self.state is CloseState.OPEN

    @property
    def closed(self) -> bool:
        """The TCP connection should be closed now (§7.1.1: the server closes it first)."""
        return self.state is CloseState.CLOSED

    def timed_out(self, now: float) -> bool:
        """Our close frame went unanswered for ``timeout`` seconds: drop the TCP connection (§7.1.1).

        For a loop that polls many connections. A one-shot timer set for ``timeout`` should test
        ``state is CloseState.CLOSING`` instead: gevent runs timers on the loop's cached clock, which can be
        a little behind ``time.monotonic()``, so the deadline may look not quite reached when it fires."""
        return self.state is CloseState.CLOSING and self.deadline is not None and now >= self.deadline

    @property
    def close_code(self) -> int | None:
        """The code the connection ended with, for logs and stats: the first close frame's, 1006 when it
        was dropped without one (§7.1.5), None while open."""
        if self.state is CloseState.OPEN:
            return None
        if self.peer_closed_first:
            return self.received_code
        if self.sent_code is not None:
            return self.sent_code
        return CLOSE_ABNORMAL

    # ------------------------------------------------------------------ events
    def send_close(self, code: int = CLOSE_NORMAL, reason: str = "", *, now: float) -> bytes | None:
        """We start the handshake (§7.1.2): the close frame to send after everything already queued, or
        None when a close frame was sent already or the connection is gone (one close frame, §5.5.1)."""
        if self.state is not CloseState.OPEN:
            return None
        self.state = CloseState.CLOSING
        self.sent_code = code
        self.peer_closed_first = False
        self.deadline = now + self.timeout
        return encode_close(code, reason)

    def receive_close(self, payload: bytes) -> bytes | None:
        """The peer's close frame. When it started the handshake, the close frame to answer with: its code
        echoed (§5.5.1), 1000 for an empty one (1005 is not sendable, §7.4.1), 1002/1007 for a malformed one
        (§7.4.1, §8.1); None when it answers ours. Either way the handshake is over (§7.1.1)."""
        if self.state is CloseState.CLOSED:
            return None  # after the handshake nothing is read any more
        try:
            code, _reason = parse_close_payload(payload)
            answer = CLOSE_NORMAL if code == CLOSE_NO_STATUS else code
        except ProtocolError as exc:
            code = answer = exc.code
        self.received_code = code
        frame = None
        if self.state is CloseState.OPEN:
            self.peer_closed_first = True
            self.sent_code = answer
            frame = encode_close(answer)
        self.state = CloseState.CLOSED
        return frame

    def connection_lost(self) -> None:
        """The transport is gone (EOF, a socket error, or dropped on purpose): the handshake cannot
        complete any more."""
        if self.state is not CloseState.CLOSED:
            self.dropped = True
            self.state = CloseState.CLOSED

    def abort(self) -> None:
        """Drop the connection without (finishing) the handshake: a dead client, or one that never read."""
        self.connection_lost()
