"""Hostile input against a live broker: random and mutated PDUs and frames get a clear error or a clean
close; the process never crashes and other connections are unaffected."""

from __future__ import annotations

import json
import socket

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.client import CobraClient
from bench.wsclient import RawWebSocket, authenticate
from tests.conftest import TEST_APP
from tests.fuzz.test_parser_properties import frames, json_values, mutate
from tests.support.processes import BrokerProcess

LIVE = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

ACTIONS = [
    "auth/handshake",
    "auth/authenticate",
    "rtm/publish",
    "rtm/subscribe",
    "rtm/unsubscribe",
    "rtm/read",
    "rtm/write",
    "rtm/delete",
    "admin/get_connections",
    "admin/close_connection",
    "rtm/unknown",
    "",
]
BODY_KEYS = [
    "channel",
    "channels",
    "message",
    "subscription_id",
    "filter",
    "position",
    "batch_size",
    "force",
    "connection_id",
    "method",
    "data",
    "credentials",
]


@pytest.fixture(scope="module")
def hostile_broker(redis_server, test_apps, tmp_path_factory):
    process = BrokerProcess(redis_server.url, tmp_path_factory.mktemp("hostile")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def canary(hostile_broker, test_apps):
    """A well-behaved client that must keep working whatever the others send."""
    client = CobraClient(
        hostile_broker.endpoint, TEST_APP, "pubsub", test_apps[TEST_APP].roles["pubsub"].secret
    )
    client.subscribe("canary")
    yield client
    client.close()


def assert_canary_alive(canary, hostile_broker, marker):
    assert hostile_broker.process.poll() is None, "the broker process died"
    canary.publish("canary", marker)
    while True:
        push = canary.next_push(timeout=10)
        if push["action"] == "rtm/subscription/data" and push["body"]["messages"] == [marker]:
            return


def drain(ws: RawWebSocket) -> None:
    """Read whatever comes back until the server closes or goes quiet; every reply must be well-formed."""
    try:
        while True:
            frame = ws.recv_frame(timeout=0.5)
            if frame.opcode == 8:
                assert frame.close_code in (None, 1000, 1002, 1007, 1008, 1009)
                return
            if frame.opcode == 1:
                pdu = json.loads(frame.payload)
                assert pdu.get("action") and pdu.get("id") is not None
    except OSError:  # timeouts and resets included
        return


bodies = st.dictionaries(st.sampled_from(BODY_KEYS), json_values, max_size=5)
pdus = st.fixed_dictionaries(
    {"action": st.sampled_from(ACTIONS)}, optional={"id": json_values, "body": bodies | json_values}
)


@LIVE
@given(st.lists(pdus, min_size=1, max_size=6), st.booleans())
def test_random_pdus_get_replies_or_a_clean_close(hostile_broker, canary, test_apps, sequence, authenticated):
    ws = RawWebSocket(hostile_broker.port, TEST_APP)
    try:
        if authenticated:
            authenticate(ws, "pubsub", test_apps[TEST_APP].roles["pubsub"].secret)
        for pdu in sequence:
            ws.send_frame(1, orjson.dumps(pdu))
        drain(ws)
    finally:
        ws.close()
    assert_canary_alive(canary, hostile_broker, {"after": "pdus"})


@LIVE
@given(
    st.lists(frames, min_size=1, max_size=6),
    st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 255)), max_size=3),
    st.sampled_from([None, "permessage-deflate", "permessage-deflate; client_no_context_takeover"]),
)
def test_random_frames_get_replies_or_a_clean_close(hostile_broker, canary, sequence, flips, extension):
    headers = {"Sec-WebSocket-Extensions": extension} if extension else None
    ws = RawWebSocket(hostile_broker.port, TEST_APP, headers)
    try:
        ws.sock.sendall(mutate(b"".join(sequence), flips))
        drain(ws)
    finally:
        ws.close()
    assert_canary_alive(canary, hostile_broker, {"after": "frames"})


@LIVE
@given(st.binary(min_size=1, max_size=2000))
def test_random_bytes_instead_of_a_handshake_never_hurt(hostile_broker, canary, garbage):
    with socket.create_connection(("127.0.0.1", hostile_broker.port), timeout=5) as sock:
        try:
            sock.sendall(garbage + b"\r\n\r\n")
            sock.settimeout(1)
            sock.recv(65536)
        except OSError:
            pass
    assert_canary_alive(canary, hostile_broker, {"after": "garbage"})


def test_client_disconnecting_mid_frame_is_harmless(hostile_broker, canary, test_apps):
    for cut in (1, 2, 5, 20):
        ws = RawWebSocket(hostile_broker.port, TEST_APP)
        authenticate(ws, "pubsub", test_apps[TEST_APP].roles["pubsub"].secret)
        data = orjson.dumps(
            {"action": "rtm/publish", "id": 1, "body": {"channel": "c", "message": "x" * 500}}
        )
        header = bytes([0x81, 0xFE]) + len(data).to_bytes(2, "big") + b"\x00\x00\x00\x00"
        ws.sock.sendall((header + data)[:cut])
        ws.close()
    assert_canary_alive(canary, hostile_broker, {"after": "cut"})


def test_no_unexpected_exception_was_logged(hostile_broker, canary):
    assert_canary_alive(canary, hostile_broker, {"final": True})
    output = hostile_broker.output()
    assert "Traceback" not in output, output[-3000:]
