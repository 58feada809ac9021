"""RFC 6455 §5 and RFC 7692 §7.2 without a socket: the incremental frame reader and the encoder."""

from __future__ import annotations

import os
import struct
import zlib

import pytest

from app.websocket.frames import (
    MessageReader,
    ProtocolError,
    apply_mask,
    compress_message,
    encode_frame,
    parse_close_payload,
)
from app.websocket.handshake import DeflateParams


def client_frame(opcode, payload, fin=True, rsv1=False, mask=True):
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        header = struct.pack("!BB", first, bit | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, bit | 127, n)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + apply_mask(payload, key)


def test_apply_mask_is_an_involution_at_every_length():
    key = b"\x01\x80\xff\x10"
    for n in (0, 1, 3, 4, 5, 125, 126, 65536, 70001):
        data = os.urandom(n)
        assert apply_mask(apply_mask(data, key), key) == data


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 100_000])
def test_every_length_encoding_is_read(size):
    reader = MessageReader(1 << 20)
    payload = b"a" * size
    [(opcode, data)] = reader.feed(client_frame(1, payload))
    assert (opcode, data) == (1, payload)


def test_frames_split_at_every_byte_are_reassembled():
    frame = client_frame(1, b'{"k": "value"}')
    reader = MessageReader(1 << 20)
    events = []
    for i in range(len(frame)):
        events += reader.feed(frame[i : i + 1])
    assert events == [(1, b'{"k": "value"}')]


def test_several_frames_in_one_read():
    reader = MessageReader(1 << 20)
    events = reader.feed(client_frame(1, b"a") + client_frame(9, b"p") + client_frame(2, b"b"))
    assert events == [(1, b"a"), (9, b"p"), (2, b"b")]


def test_fragments_are_joined_and_control_frames_interleave():
    reader = MessageReader(1 << 20)
    events = reader.feed(client_frame(1, b"he", fin=False) + client_frame(9, b"") + client_frame(0, b"llo"))
    assert events == [(9, b""), (1, b"hello")]


def test_declared_length_over_the_limit_fails_before_the_payload_arrives():
    reader = MessageReader(1000)
    header = struct.pack("!BBQ", 0x81, 0x80 | 127, 10**9)
    with pytest.raises(ProtocolError) as error:
        reader.feed(header)
    assert error.value.code == 1009


def expect_close(code, data, deflate=None, limit=1 << 20):
    with pytest.raises(ProtocolError) as error:
        MessageReader(limit, deflate).feed(data)
    assert error.value.code == code


def test_unmasked_client_frame_is_1002():
    expect_close(1002, client_frame(1, b"x", mask=False))


def test_rsv1_without_deflate_is_1002():
    expect_close(1002, client_frame(1, b"x", rsv1=True))


def test_rsv1_on_control_frame_is_1002_even_with_deflate():
    expect_close(1002, client_frame(9, b"x", rsv1=True), deflate=DeflateParams())


def test_invalid_utf8_text_is_1007():
    expect_close(1007, client_frame(1, b"\xc3\x28"))


def test_invalid_utf8_binary_is_passed_on():
    assert MessageReader(100).feed(client_frame(2, b"\xc3\x28")) == [(2, b"\xc3\x28")]


def test_text_is_not_utf8_checked_where_it_carries_cbor():
    # PROTOCOL §10: the Satori Python SDK sends CBOR in text frames; only a CBOR connection skips the check.
    cbor_text = b"\xa1\xc3\x28"  # a CBOR map head, then bytes that are not UTF-8
    assert MessageReader(100, check_utf8=False).feed(client_frame(1, cbor_text)) == [(1, cbor_text)]


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def test_compressed_message_is_inflated():
    reader = MessageReader(1 << 20, DeflateParams())
    assert reader.feed(client_frame(1, deflated(b'{"a": 1}'), rsv1=True)) == [(1, b'{"a": 1}')]


def test_context_takeover_is_supported():
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    first = (compressor.compress(b"hello hello") + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    second = (compressor.compress(b"hello hello") + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    reader = MessageReader(1 << 20, DeflateParams())
    assert reader.feed(client_frame(1, first, rsv1=True)) == [(1, b"hello hello")]
    assert reader.feed(client_frame(1, second, rsv1=True)) == [(1, b"hello hello")]


def test_compressed_fragmented_message():
    data = deflated(b"x" * 5000)
    reader = MessageReader(1 << 20, DeflateParams())
    events = reader.feed(client_frame(1, data[:5], fin=False, rsv1=True) + client_frame(0, data[5:]))
    assert events == [(1, b"x" * 5000)]


def test_decompression_bomb_is_1009():
    expect_close(
        1009, client_frame(1, deflated(b"0" * 2_000_000), rsv1=True), deflate=DeflateParams(), limit=1 << 20
    )


def test_garbage_deflate_is_1007():
    expect_close(1007, client_frame(1, b"\xff\xff\xff\xff", rsv1=True), deflate=DeflateParams())


def test_server_compression_round_trips():
    payload = b'{"blob": "' + b"z" * 4000 + b'"}'
    compressed = compress_message(payload, 15)
    assert len(compressed) < len(payload)
    assert zlib.decompressobj(-15).decompress(compressed + b"\x00\x00\xff\xff") == payload


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_server_frames_are_final_and_unmasked(size):
    frame = encode_frame(1, b"q" * size)
    assert frame[0] == 0x81
    assert not frame[1] & 0x80


def test_close_payload_parsing():
    assert parse_close_payload(b"") == (1005, "")
    assert parse_close_payload(struct.pack("!H", 1000) + "bye ✓".encode()) == (1000, "bye ✓")
    for bad in (b"\x03", struct.pack("!H", 999), struct.pack("!H", 1006), struct.pack("!H", 5000)):
        with pytest.raises(ProtocolError):
            parse_close_payload(bad)
    with pytest.raises(ProtocolError) as error:
        parse_close_payload(struct.pack("!H", 1000) + b"\xff")
    assert error.value.code == 1007
