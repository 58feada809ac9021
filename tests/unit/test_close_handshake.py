"""RFC 6455 §7, the closing handshake, one rule per test: no socket, time passed in."""

from __future__ import annotations

import struct

import pytest

from app.websocket.closing import CLOSE_ABNORMAL, CloseHandshake, CloseState
from app.websocket.frames import OP_CLOSE, encode_close


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def frame_code(frame: bytes) -> int:
    assert frame[0] == 0x80 | OP_CLOSE
    return struct.unpack("!H", frame[2:4])[0]


def test_a_new_connection_is_open_and_takes_and_sends_data():
    handshake = CloseHandshake()
    assert handshake.state is CloseState.OPEN
    assert handshake.may_send_data and handshake.accepts_data and not handshake.closed
    assert handshake.close_code is None


def test_7_1_2_the_server_starts_the_handshake_with_a_close_frame_carrying_its_code():
    handshake = CloseHandshake()
    frame = handshake.send_close(1001, "server shutting down", now=10.0)
    assert frame == encode_close(1001, "server shutting down")
    assert handshake.state is CloseState.CLOSING
    assert handshake.peer_closed_first is False


def test_5_5_1_only_one_close_frame_is_sent():
    handshake = CloseHandshake()
    assert handshake.send_close(1000, now=0.0) is not None
    assert handshake.send_close(1008, "again", now=1.0) is None
    assert handshake.sent_code == 1000


def test_5_5_1_no_data_frame_is_sent_after_our_close_frame():
    handshake = CloseHandshake()
    handshake.send_close(1000, now=0.0)
    assert not handshake.may_send_data


def test_data_received_after_our_close_frame_is_ignored():
    handshake = CloseHandshake()
    handshake.send_close(1000, now=0.0)
    assert not handshake.accepts_data


def test_7_1_1_the_peers_answer_completes_our_handshake_and_nothing_more_is_sent():
    handshake = CloseHandshake()
    handshake.send_close(1001, now=0.0)
    assert handshake.receive_close(close_payload(1001)) is None
    assert handshake.closed and not handshake.dropped
    assert handshake.close_code == 1001


def test_5_5_1_a_close_from_the_peer_is_answered_with_its_code_echoed():
    handshake = CloseHandshake()
    answer = handshake.receive_close(close_payload(4321, b"bye"))
    assert answer is not None and frame_code(answer) == 4321
    assert handshake.peer_closed_first is True
    assert handshake.closed  # §7.1.1: the server then closes the TCP connection, without waiting
    assert handshake.close_code == 4321


def test_7_4_1_an_empty_close_frame_1005_is_answered_with_1000():
    handshake = CloseHandshake()
    answer = handshake.receive_close(b"")
    assert answer is not None and frame_code(answer) == 1000
    assert handshake.received_code == 1005


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", 1002),  # §5.5.1: a 1-byte body cannot hold a status code
        (close_payload(1005), 1002),  # §7.4.1: 1005 must never be sent
        (close_payload(999), 1002),  # below the defined range
        (close_payload(1000, b"\xff\xfe"), 1007),  # §5.5.1: the reason must be UTF-8
    ],
    ids=["one-byte", "1005-on-the-wire", "999", "reason-not-utf8"],
)
def test_7_4_1_a_malformed_close_frame_is_answered_with_the_error_code(payload, code):
    handshake = CloseHandshake()
    answer = handshake.receive_close(payload)
    assert answer is not None and frame_code(answer) == code
    assert handshake.closed


def test_when_both_sides_close_at_once_the_peers_close_completes_ours_without_an_echo():
    handshake = CloseHandshake()
    handshake.send_close(1000, now=0.0)
    assert handshake.receive_close(close_payload(1001)) is None  # crossing close frames: no third one
    assert handshake.closed
    assert handshake.close_code == 1000  # we were first


def test_a_close_frame_after_the_handshake_is_ignored():
    handshake = CloseHandshake()
    handshake.receive_close(close_payload(1000))
    assert handshake.receive_close(close_payload(1000)) is None
    assert handshake.send_close(1000, now=0.0) is None


def test_7_1_1_a_peer_that_does_not_answer_our_close_is_dropped_after_the_timeout():
    handshake = CloseHandshake(timeout=4.0)
    assert not handshake.timed_out(100.0)  # nothing to wait for while open
    handshake.send_close(1000, now=100.0)
    assert not handshake.timed_out(103.9)
    assert handshake.timed_out(104.0)
    handshake.abort()
    assert handshake.closed and handshake.dropped


def test_an_answered_close_never_times_out():
    handshake = CloseHandshake(timeout=4.0)
    handshake.send_close(1000, now=0.0)
    handshake.receive_close(close_payload(1000))
    assert not handshake.timed_out(1000.0)


def test_7_1_5_a_connection_lost_without_a_close_frame_ends_with_1006():
    handshake = CloseHandshake()
    handshake.connection_lost()
    assert handshake.closed and handshake.dropped
    assert handshake.close_code == CLOSE_ABNORMAL
    assert handshake.send_close(1000, now=0.0) is None  # nothing can be sent on a lost connection


def test_a_connection_lost_after_the_handshake_is_not_a_drop():
    handshake = CloseHandshake()
    handshake.receive_close(close_payload(1000))
    handshake.connection_lost()
    assert not handshake.dropped
    assert handshake.close_code == 1000
