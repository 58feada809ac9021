"""A connection that speaks CBOR (PROTOCOL §10): the same transport, other bytes on the wire.

:class:`app.connection.Connection` builds this class instead of itself when the handshake agreed on the
``cbor`` sub-protocol, so the broker makes every connection the same way and the JSON path pays nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import codec
from .connection import Connection
from .websocket import OP_BINARY
from .websocket.frames import compressed_push_frame, frame_header

if TYPE_CHECKING:
    from .subscription import Subscription


class CborConnection(Connection):
    """A connection that chose the ``cbor`` sub-protocol (PROTOCOL §10): requests are CBOR (in binary or
    text frames), and everything sent is CBOR in binary frames. Replies are built as JSON like everywhere
    else and turned into CBOR here (one parse and one encode per reply); pushes arrive as CBOR pieces from
    :class:`app.subscription.CborSubscription`."""

    __slots__ = ()
    encoding = codec.SUBPROTOCOL
    parse_request = staticmethod(codec.parse_request)

    def send_payload(self, payload: bytes) -> None:
        """Queue one PDU, given as JSON bytes, as CBOR."""
        if not self._closing:
            self._enqueue(self.ws.encode_message(codec.from_json(payload), OP_BINARY))

    def send_push(
        self,
        counter: int,
        subscription_part: bytes,
        tail: bytes,
        owner: Subscription | None = None,
        count: int = 0,
    ) -> None:
        """Queue a CBOR subscription push, framed in one copy; ``owner`` and ``count`` as for JSON."""
        if self._closing:
            return
        number = codec.push_counter(counter)
        size = CBOR_PUSH_HEAD_SIZE + len(number) + len(subscription_part) + len(tail)
        if self._compress_from is not None and size >= self._compress_from:
            prefix = b"".join((codec.PUSH_HEAD, number, subscription_part))
            frame = compressed_push_frame(OP_BINARY, prefix, tail, self.ws.window_bits)
        else:
            header = frame_header(0x80 | OP_BINARY, size)
            frame = b"".join((header, codec.PUSH_HEAD, number, subscription_part, tail))
        self._enqueue(frame, owner, count)

    def _notice_frame(self, payload: bytes) -> bytes:
        """A shedding notice (PROTOCOL §7), built as JSON, as CBOR in a binary frame."""
        return self.ws.encode_message(codec.from_json(payload), OP_BINARY)


CBOR_PUSH_HEAD_SIZE = len(codec.PUSH_HEAD)
