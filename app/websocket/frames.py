"""WebSocket framing (RFC 6455 §5) and per-message compression (RFC 7692 §7.2), sans I/O.

:class:`MessageReader` is fed raw bytes from the socket and returns complete events: data messages
(reassembled, decompressed, size-checked, UTF-8-checked) and control frames. Protocol violations raise
:class:`ProtocolError` with the close code the connection must be failed with.

Costs: a reader keeps at most one partial frame plus the fragments of one message, both bounded by
``max_message_size``; a decompressor (~7 KiB plus a 32 KiB window) exists only on connections that actually
send compressed messages with context takeover.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

try:  # SIMD unmasking from python-websockets: ~0.1 µs for a 200-byte payload.
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - exercised only where the C extension is unavailable

    def apply_mask(data: bytes, mask: bytes) -> bytes:
        """Whole-buffer XOR through big integers: no per-byte Python loop."""
        n = len(data)
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
        return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")


from .handshake import DeflateParams

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_DATA_OPCODES = (OP_CONTINUATION, OP_TEXT, OP_BINARY)
_CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)

# Close codes (RFC 6455 §7.4.1)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011

_DEFLATE_TAIL = b"\x00\x00\xff\xff"


class ProtocolError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Event(NamedTuple):
    opcode: int  # OP_TEXT / OP_BINARY for messages, or a control opcode
    payload: bytes


def valid_close_code(code: int) -> bool:
    """Codes a peer may put on the wire (§7.4.1; 1004-1006 and 1015 are reserved)."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) or (
        3000 <= code <= 4999
    )


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a close frame; 1005 "no status" when empty (§7.1.5)."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
    (code,) = struct.unpack("!H", payload[:2])
    if not valid_close_code(code):
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CLOSE_INVALID_DATA, "close reason is not UTF-8") from None
    return code, reason


def frame_header(first: int, n: int) -> bytes:
    """The header of an unmasked frame of ``n`` payload bytes (§5.2)."""
    if n < 126:
        return bytes((first, n))
    if n < 65536:
        return struct.pack("!BBH", first, 126, n)
    return struct.pack("!BBQ", first, 127, n)


def text_frame_header(n: int) -> bytes:
    """Header of a final, uncompressed text frame: lets a caller frame a payload it assembles in one join."""
    return frame_header(0x81, n)


def encode_frame(opcode: int, payload: bytes, *, compressed: bool = False) -> bytes:
    """A single unmasked, final frame, as a server sends them (§5.1: servers never mask)."""
    return frame_header(0x80 | opcode | (0x40 if compressed else 0), len(payload)) + payload


def encode_close(code: int, reason: str = "") -> bytes:
    return encode_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode("utf-8")[:123])


def compress_message(payload: bytes, window_bits: int) -> bytes:
    """Compress one message on its own (we always negotiate ``server_no_context_takeover``)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -window_bits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    # §7.2.1: the sync flush ends with 00 00 ff ff, which is left out on the wire.
    return data[:-4] if data.endswith(_DEFLATE_TAIL) else data


class SharedTailCompressor:
    """Compresses the shared end of a push once per publish, whatever the number of subscribers.

    A push is ``prefix + tail``: the prefix (push id, subscription id) differs per subscription, the tail
    (position and messages) is the same bytes object for every subscriber of one delivery. With
    ``server_no_context_takeover`` (always negotiated) a message is its own deflate stream, and a deflate
    stream may be a series of blocks: a *stored* block carrying the prefix as is, then the tail compressed
    on its own (its back-references stay inside it). So the tail is compressed once per (tail, window
    bits) and each subscriber costs one small concatenation (RFC 1951 §3.2.4, RFC 7692 §7.2.1). Measured
    in BENCHMARKS.md: CPU per publish with 1,000 deflate subscriptions. Holds the last tail only."""

    __slots__ = ("_compressed", "_tail")

    def __init__(self) -> None:
        self._tail: bytes | None = None
        self._compressed: dict[int, bytes] = {}

    def message(self, prefix: bytes, tail: bytes, window_bits: int) -> bytes:
        """The permessage-deflate payload of ``prefix + tail`` (trailing 00 00 ff ff left out)."""
        if tail is not self._tail:
            self._tail = tail
            self._compressed = {}
        compressed = self._compressed.get(window_bits)
        if compressed is None:
            compressed = self._compressed[window_bits] = compress_message(tail, window_bits)
        n = len(prefix)
        if n > 0xFFFF:  # a stored block holds 65,535 bytes; a prefix is ~60
            return compress_message(prefix + tail, window_bits)
        # A stored block, not final: BFINAL=0 and BTYPE=00 in a byte of its own, then LEN and NLEN.
        return b"".join((b"\x00", struct.pack("<HH", n, n ^ 0xFFFF), prefix, compressed))


shared_tail_compressor = SharedTailCompressor()  # one per process: the fan-out loop is single-threaded


def compressed_push_frame(opcode: int, prefix: bytes, tail: bytes, window_bits: int) -> bytes:
    """A compressed frame of ``prefix + tail`` whose tail was compressed once for all its subscribers."""
    payload = shared_tail_compressor.message(prefix, tail, window_bits)
    return frame_header(0xC0 | opcode, len(payload)) + payload


class MessageReader:
    """Incremental parser of client frames: ``feed(bytes)`` then ``events()``."""

    __slots__ = (
        "_buffer",
        "_check_utf8",
        "_decompressor",
        "_deflate",
        "_fragments",
        "_fragments_size",
        "_message_compressed",
        "_message_opcode",
        "max_message_size",
    )

    def __init__(
        self, max_message_size: int, deflate: DeflateParams | None = None, check_utf8: bool = True
    ) -> None:
        self.max_message_size = max_message_size
        self._check_utf8 = check_utf8  # False on CBOR connections, whose text frames carry CBOR
        self._deflate = deflate
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._message_opcode = 0  # opcode of the message being reassembled, 0 when none
        self._message_compressed = False
        self._decompressor: zlib._Decompress | None = None

    def feed(self, data: bytes) -> list[Event]:
        """Consume bytes; return the events they complete (possibly none)."""
        buffer = self._buffer + data if self._buffer else data
        events: list[Event] = []
        pos = 0
        end = len(buffer)
        limit = self.max_message_size
        while end - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            opcode = first & 0x0F
            length = second & 0x7F
            header = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                header = 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                header = 10
            # The common frame, a whole masked text or binary message with no RSV bit (uncompressed) outside
            # a fragmented one, passes every check of _check_header but the size, and _on_frame would hand
            # it straight to _complete: it takes the short way, with the same checks in the same order.
            whole = (first == 0x81 or first == 0x82) and second & 0x80 and not self._message_opcode
            # Check before buffering the payload, so a huge declared length costs nothing (§10.4).
            if not whole:
                self._check_header(first, second, opcode, length, limit)
            elif length > limit:
                raise ProtocolError(CLOSE_MESSAGE_TOO_BIG, f"message over {limit} bytes")
            frame_end = pos + header + 4 + length
            if frame_end > end:
                break
            mask = buffer[pos + header : pos + header + 4]
            payload = apply_mask(buffer[pos + header + 4 : frame_end], mask) if length else b""
            pos = frame_end
            if whole:
                if opcode == OP_TEXT and self._check_utf8 and not payload.isascii():
                    self._check_text(payload)
                events.append(Event(opcode, payload))
                continue
            event = self._on_frame(first, opcode, payload)
            if event is not None:
                events.append(event)
        self._buffer = buffer[pos:] if pos < end else b""
        return events

    def _check_header(self, first: int, second: int, opcode: int, length: int, limit: int) -> None:
        if not second & 0x80:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
        rsv = first & 0x70
        if rsv & 0x30 or (rsv and (self._deflate is None or opcode not in (OP_TEXT, OP_BINARY))):
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
        if opcode in _CONTROL_OPCODES:
            if not first & 0x80:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "fragmented control frame")
            if length > 125:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "control frame payload over 125 bytes")
        elif opcode not in _DATA_OPCODES:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
        elif self._fragments_size + length > limit:
            raise ProtocolError(CLOSE_MESSAGE_TOO_BIG, f"message over {limit} bytes")

    def _on_frame(self, first: int, opcode: int, payload: bytes) -> Event | None:
        if opcode >= OP_CLOSE:
            return Event(opcode, payload)
        fin = first & 0x80
        if opcode == OP_CONTINUATION:
            if not self._message_opcode:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "continuation frame without a message")
        else:
            if self._message_opcode:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented message")
            compressed = bool(first & 0x40)
            if fin:  # the common case: a whole message in one frame
                return self._complete(opcode, payload, compressed)
            self._message_opcode = opcode
            self._message_compressed = compressed
        self._fragments.append(payload)
        self._fragments_size += len(payload)
        if not fin:
            return None
        message = b"".join(self._fragments)
        opcode, compressed = self._message_opcode, self._message_compressed
        self._fragments = []
        self._fragments_size = 0
        self._message_opcode = 0
        return self._complete(opcode, message, compressed)

    def _complete(self, opcode: int, payload: bytes, compressed: bool) -> Event:
        if compressed:
            payload = self._inflate(payload)
        # ASCII is valid UTF-8: isascii() answers without building the str that decode() would (most
        # messages are pure ASCII JSON).
        if opcode == OP_TEXT and self._check_utf8 and not payload.isascii():
            self._check_text(payload)
        return Event(opcode, payload)

    @staticmethod
    def _check_text(payload: bytes) -> None:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(CLOSE_INVALID_DATA, "text message is not valid UTF-8") from None

    def _inflate(self, payload: bytes) -> bytes:
        assert self._deflate is not None
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = zlib.decompressobj(-15)
            if not self._deflate.client_no_context_takeover:
                self._decompressor = decompressor  # the client may refer back to earlier messages
        limit = self.max_message_size
        try:
            data = decompressor.decompress(payload + _DEFLATE_TAIL, limit + 1)
        except zlib.error as exc:
            raise ProtocolError(CLOSE_INVALID_DATA, f"bad deflate data: {exc}") from None
        if len(data) > limit or decompressor.unconsumed_tail:
            raise ProtocolError(CLOSE_MESSAGE_TOO_BIG, f"message over {limit} bytes after decompression")
        return data
