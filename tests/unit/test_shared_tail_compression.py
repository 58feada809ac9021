"""RFC 7692 pushes whose shared tail is compressed once: each inflates, on its own, to prefix + tail."""

from __future__ import annotations

import zlib

import pytest

from app.websocket.frames import SharedTailCompressor

TAIL = b'"position":"1-0","messages":[' + b'{"score":12345,"name":"player"},' * 60 + b"{}]}}"


def inflate(payload: bytes, bits: int) -> bytes:
    return zlib.decompressobj(-bits).decompress(payload + b"\x00\x00\xff\xff")


@pytest.mark.parametrize("bits", [9, 10, 12, 15])
def test_every_subscriber_push_inflates_to_its_own_prefix_and_the_shared_tail(bits):
    compressor = SharedTailCompressor()
    for n in range(5):
        prefix = b'{"action":"rtm/subscription/data","id":%d,"body":{"subscription_id":"s%d",' % (n, n)
        assert inflate(compressor.message(prefix, TAIL, bits), bits) == prefix + TAIL


def test_the_tail_is_compressed_once_and_shared_byte_for_byte():
    compressor = SharedTailCompressor()
    first = compressor.message(b"a" * 10, TAIL, 15)
    second = compressor.message(b"b" * 30, TAIL, 15)
    assert first[5 + 10 :] == second[5 + 30 :]
    assert len(first) - 15 < len(TAIL) / 4  # the tail is really compressed


def test_an_empty_prefix_and_a_new_tail():
    compressor = SharedTailCompressor()
    compressor.message(b"x", TAIL, 15)
    other = TAIL.replace(b"player", b"viewer")
    assert inflate(compressor.message(b"", other, 15), 15) == other
