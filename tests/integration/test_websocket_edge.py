"""PROTOCOL §1 / RFC 6455 / RFC 7692 at the edge: deflate, limits, frames, pings, close codes."""

from __future__ import annotations

import socket
import struct
import time
import zlib

import pytest

from app.client import CobraClient
from bench.wsclient import RawWebSocket, authenticate, upgrade_request
from tests.conftest import TEST_APP

PUBLISH = {"action": "rtm/publish", "id": 5, "body": {"channel": "edge", "message": {"k": "v"}}}


@pytest.fixture
def raw(broker, test_apps):
    sockets = []

    def open_raw(headers=None, role="pubsub", port=None):
        ws = RawWebSocket(port or broker.port, TEST_APP, headers)
        sockets.append(ws)
        if role:
            authenticate(ws, role, test_apps[TEST_APP].roles[role].secret)
        return ws

    yield open_raw
    for ws in sockets:
        ws.close()


# --- permessage-deflate negotiation (RFC 7692 §7) -------------------------------------------------------
def test_deflate_is_negotiated_with_server_no_context_takeover(raw):
    ws = raw({"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}, role=None)
    assert ws.headers["sec-websocket-extensions"] == "permessage-deflate; server_no_context_takeover"


def test_deflate_parameters_are_honoured(raw):
    offer = (
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12"
    )
    ws = raw({"Sec-WebSocket-Extensions": offer}, role=None)
    agreed = [p.strip() for p in ws.headers["sec-websocket-extensions"].split(";")]
    assert agreed[0] == "permessage-deflate"
    assert set(agreed[1:]) == {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits=10",
        "client_max_window_bits=12",
    }


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; unknown_param",
        "permessage-deflate; server_max_window_bits=99",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "x-webkit-deflate-frame",
    ],
)
def test_unacceptable_offers_are_declined(raw, offer):
    ws = raw({"Sec-WebSocket-Extensions": offer}, role=None)
    assert ws.status == 101
    assert "sec-websocket-extensions" not in ws.headers


def test_first_acceptable_offer_wins(raw):
    offer = "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=11"
    ws = raw({"Sec-WebSocket-Extensions": offer}, role=None)
    assert "server_max_window_bits=11" in ws.headers["sec-websocket-extensions"]


def test_deflate_is_declined_when_disabled(broker_factory, test_apps):
    broker = broker_factory(env={"COBRA_DEFLATE": "false"})
    ws = RawWebSocket(broker.port, TEST_APP, {"Sec-WebSocket-Extensions": "permessage-deflate"})
    assert "sec-websocket-extensions" not in ws.headers
    ws.close()
    role = test_apps[TEST_APP].roles["pubsub"]
    with CobraClient(broker.endpoint, TEST_APP, "pubsub", role.secret) as client:  # offers deflate, copes
        assert client.publish("c", 1)["channels"] == ["c"]


def test_compressed_messages_from_the_client_are_inflated(raw):
    ws = raw({"Sec-WebSocket-Extensions": "permessage-deflate"})
    ws.send_compressed_json(PUBLISH)
    assert ws.recv_json()["action"] == "rtm/publish/ok"
    ws.send_compressed_json(PUBLISH)  # the server keeps the client's compression context
    assert ws.recv_json()["action"] == "rtm/publish/ok"


def test_big_outgoing_messages_are_compressed_and_small_ones_are_not(raw, channel):
    ws = raw({"Sec-WebSocket-Extensions": "permessage-deflate"})
    ws.send_json({"action": "rtm/subscribe", "id": 3, "body": {"channel": channel}})
    assert ws.recv_json()["action"] == "rtm/subscribe/ok"
    big = {"blob": "x" * 20000}
    ws.send_json({"action": "rtm/publish", "id": 4, "body": {"channel": channel, "message": big}})
    frames = [ws.recv_frame(), ws.recv_frame()]
    push = next(f for f in frames if f.json()["action"] == "rtm/subscription/data")
    ack = next(f for f in frames if f.json()["action"] == "rtm/publish/ok")
    assert push.rsv1 and push.json()["body"]["messages"] == [big]
    assert not ack.rsv1


def test_big_messages_round_trip_through_an_independent_deflate_client(connect, channel):
    subscriber = connect()
    subscriber.subscribe(channel)
    big = {"values": list(range(20000))}
    connect().publish(channel, big)
    assert subscriber.next_push()["body"]["messages"] == [big]


def test_bad_deflate_data_closes_with_1007(raw):
    ws = raw({"Sec-WebSocket-Extensions": "permessage-deflate"}, role=None)
    ws.send_frame(1, b"\xff\xfe\xfd not deflate", rsv1=True)
    assert ws.recv_close().close_code == 1007


def test_decompressed_size_is_limited_like_a_plain_message(raw):
    ws = raw({"Sec-WebSocket-Extensions": "permessage-deflate"}, role=None)
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = bomb.compress(b" " * (3 << 20)) + bomb.flush(zlib.Z_SYNC_FLUSH)
    ws.send_frame(1, data[:-4], rsv1=True)
    assert ws.recv_close().close_code == 1009


def test_compressed_frame_without_negotiation_is_a_protocol_error(raw):
    ws = raw(role=None)
    ws.send_frame(1, b"abc", rsv1=True)
    assert ws.recv_close().close_code == 1002


# --- sizes and frame types ---------------------------------------------------------------------------------
def test_message_over_1_mib_closes_with_1009(raw):
    ws = raw(role=None)
    ws.send_frame(1, b" " * ((1 << 20) + 1))
    assert ws.recv_close().close_code == 1009


def test_fragmented_message_over_the_limit_closes_with_1009(raw):
    ws = raw(role=None)
    ws.send_frame(1, b" " * (600 << 10), fin=False)
    ws.send_frame(0, b" " * (600 << 10), fin=True)
    assert ws.recv_close().close_code == 1009


def test_message_of_exactly_1_mib_is_accepted(raw):
    ws = raw()
    pdu = b'{"action":"rtm/publish","id":1,"body":{"channel":"c","message":"'
    tail = b'"}}'
    ws.send_frame(1, pdu + b"x" * ((1 << 20) - len(pdu) - len(tail)) + tail)
    assert ws.recv_json(timeout=10)["action"] == "rtm/publish/ok"


def test_binary_frames_are_parsed_as_json(raw):
    ws = raw()
    ws.send_json(PUBLISH, opcode=2)
    reply = ws.recv_frame()
    assert reply.opcode == 1  # the server always answers in text frames
    assert reply.json()["action"] == "rtm/publish/ok"


def test_fragmented_message_with_a_ping_in_the_middle(raw):
    ws = raw()
    data = struct.pack("!0s", b"") + b'{"action":"rtm/publish","id":5,"body":{"channel":"c","message":1}}'
    ws.send_frame(1, data[:10], fin=False)
    ws.send_frame(9, b"mid")
    ws.send_frame(0, data[10:30], fin=False)
    ws.send_frame(0, data[30:], fin=True)
    pong = ws.recv_frame()
    assert (pong.opcode, pong.payload) == (10, b"mid")
    assert ws.recv_json()["action"] == "rtm/publish/ok"


def test_invalid_utf8_text_closes_with_1007(raw):
    ws = raw(role=None)
    ws.send_frame(1, b'{"action": "\xff\xfe"}')
    assert ws.recv_close().close_code == 1007


@pytest.mark.parametrize(
    "frame",
    [
        {"opcode": 1, "payload": b"{}", "mask": False},
        {"opcode": 1, "payload": b"{}", "rsv2": True},
        {"opcode": 3, "payload": b"{}"},
        {"opcode": 0, "payload": b"{}"},
        {"opcode": 9, "payload": b"x" * 126},
        {"opcode": 9, "payload": b"x", "fin": False},
    ],
    ids=["unmasked", "rsv2", "reserved-opcode", "orphan-continuation", "long-ping", "fragmented-ping"],
)
def test_protocol_violations_close_with_1002(raw, frame):
    ws = raw(role=None)
    ws.send_frame(**frame)
    assert ws.recv_close().close_code == 1002


def test_new_message_inside_a_fragmented_one_is_a_protocol_error(raw):
    ws = raw(role=None)
    ws.send_frame(1, b"{", fin=False)
    ws.send_frame(1, b"{}")
    assert ws.recv_close().close_code == 1002


# --- control frames and closing ----------------------------------------------------------------------
def test_ping_is_answered_with_the_same_payload(raw):
    ws = raw(role=None)
    ws.send_frame(9, b"are you there")
    frame = ws.recv_frame()
    assert (frame.opcode, frame.payload) == (10, b"are you there")


def test_client_close_is_echoed(raw):
    ws = raw(role=None)
    ws.send_frame(8, struct.pack("!H", 4001) + b"bye")
    assert ws.recv_close().close_code == 4001
    assert ws.at_eof()


def test_empty_client_close_is_answered_with_1000(raw):
    ws = raw(role=None)
    ws.send_frame(8, b"")
    assert ws.recv_close().close_code == 1000


def test_invalid_close_code_is_a_protocol_error(raw):
    ws = raw(role=None)
    ws.send_frame(8, struct.pack("!H", 1005))
    assert ws.recv_close().close_code == 1002


def test_frame_sent_right_behind_the_handshake_is_not_lost(broker):
    sock = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
    ping = (
        struct.pack("!BB", 0x89, 0x84)
        + b"\x01\x02\x03\x04"
        + bytes(b ^ k for b, k in zip(b"fast", b"\x01\x02\x03\x04", strict=True))
    )
    sock.sendall(upgrade_request(f"/v2?appkey={TEST_APP}") + ping)
    data = b""
    deadline = time.monotonic() + 5
    while b"fast" not in data and time.monotonic() < deadline:
        data += sock.recv(4096)
    sock.close()
    assert b"101" in data.split(b"\r\n")[0]
    assert data.endswith(b"\x8a\x04fast")


def test_idle_clients_are_pinged_and_silent_ones_dropped(broker_factory):
    broker = broker_factory(env={"COBRA_PING_INTERVAL": "0.3", "COBRA_PING_TIMEOUT": "0.5"})
    ws = RawWebSocket(broker.port, TEST_APP)
    assert ws.recv_frame(timeout=5).opcode == 9  # the server's ping
    assert ws.at_eof(timeout=10)  # never answered: dropped
    ws.close()


def test_clients_that_answer_pings_stay(broker_factory):
    broker = broker_factory(env={"COBRA_PING_INTERVAL": "0.2", "COBRA_PING_TIMEOUT": "0.3"})
    ws = RawWebSocket(broker.port, TEST_APP)
    for _ in range(5):
        frame = ws.recv_frame(timeout=5)
        assert frame.opcode == 9
        ws.send_frame(10, frame.payload)
    ws.send_json(PUBLISH)
    assert ws.recv_json()["action"] in ("rtm/publish/error",)  # alive (and not authenticated)
    ws.close()
