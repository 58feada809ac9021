"""CBOR connections over real sockets (PROTOCOL §10): a client that offers ``cbor`` speaks CBOR both ways,
shares channels with JSON clients, and gets ``invalid_message`` for what JSON cannot carry.

The CBOR client is websockets' own sync client with ``subprotocols=["cbor"]`` and cbor2: nothing of ours.
"""

from __future__ import annotations

import itertools
from typing import Any

import cbor2
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from app.auth import compute_hash
from app.client import endpoint_url
from tests.conftest import TEST_APP


class CborClient:
    """A minimal Cobra client in CBOR: every PDU one CBOR map; ``text=True`` sends them in text frames, as
    the Satori Python SDK does."""

    def __init__(self, endpoint: str, text: bool = False, subprotocols: tuple[str, ...] = ("cbor",)) -> None:
        self.ws: ClientConnection = connect(
            endpoint_url(endpoint, TEST_APP),
            subprotocols=list(subprotocols),
            proxy=None,
            max_size=None,
            legacy=True,
        )
        self.text = text
        self.ids = itertools.count(1)
        self.pushes: list[dict[str, Any]] = []
        self.frames: list[bytes | str] = []

    def send(self, pdu: dict[str, Any]) -> None:
        self.ws.send(cbor2.dumps(pdu), text=self.text)

    def receive(self, timeout: float = 10.0) -> dict[str, Any]:
        frame = self.ws.recv(timeout)
        self.frames.append(frame)
        assert isinstance(frame, bytes), "the server sends binary frames on a CBOR connection"
        return cbor2.loads(frame)

    def request(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        pdu_id = next(self.ids)
        self.send({"action": action, "id": pdu_id, "body": body})
        while True:
            reply = self.receive()
            if reply.get("id") == pdu_id and not reply["action"].startswith("rtm/subscription/"):
                return reply
            self.pushes.append(reply)

    def authenticate(self, role: str, secret: str) -> None:
        handshake = self.request("auth/handshake", {"method": "role_secret", "data": {"role": role}})
        nonce = handshake["body"]["data"]["nonce"]
        reply = self.request(
            "auth/authenticate",
            {"method": "role_secret", "credentials": {"hash": compute_hash(secret, nonce)}},
        )
        assert reply["action"] == "auth/authenticate/ok", reply

    def next_data(self, timeout: float = 10.0) -> dict[str, Any]:
        for i, push in enumerate(self.pushes):
            if push["action"] == "rtm/subscription/data":
                return self.pushes.pop(i)
        while True:
            push = self.receive(timeout)
            if push["action"] == "rtm/subscription/data":
                return push

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def cbor_client(broker, test_apps):
    clients: list[CborClient] = []

    def open_client(text: bool = False, role: str | None = "pubsub") -> CborClient:
        client = CborClient(broker.endpoint, text=text)
        clients.append(client)
        if role:
            client.authenticate(role, test_apps[TEST_APP].roles[role].secret)
        return client

    yield open_client
    for client in clients:
        client.close()


def test_cbor_is_selected_when_offered_and_json_is_not(broker):
    only_cbor = CborClient(broker.endpoint)
    both = CborClient(broker.endpoint, subprotocols=("cbor", "json"))
    try:
        assert only_cbor.ws.subprotocol == "cbor"
        assert both.ws.subprotocol == "json"
    finally:
        only_cbor.close()
        both.close()


@pytest.mark.parametrize("text", [False, True], ids=["binary-frames", "text-frames"])
def test_cbor_and_json_clients_share_a_channel_both_ways(cbor_client, connect, channel, text):
    cbor = cbor_client(text=text)
    json_client = connect()
    reply = cbor.request("rtm/subscribe", {"channel": channel})
    assert reply["action"] == "rtm/subscribe/ok" and reply["body"]["subscription_id"] == channel
    json_client.subscribe(channel)

    message = {"from": "cbor", "n": 1, "f": 0.5, "list": [True, None, "é"], "big": 2**63}
    published = cbor.request("rtm/publish", {"channel": channel, "message": message})
    assert published["action"] == "rtm/publish/ok" and published["body"]["channels"] == [channel]
    json_client.publish(channel, {"from": "json", "n": 2})

    first, second = cbor.next_data(), cbor.next_data()
    assert [first["id"], second["id"]] == [0, 1]
    assert [first["body"]["messages"], second["body"]["messages"]] == [[message], [{"from": "json", "n": 2}]]
    assert (
        first["body"]["subscription_id"] == channel
        and first["body"]["position"] == published["body"]["position"]
    )
    got = [json_client.next_push()["body"]["messages"][0] for _ in range(2)]
    assert got == [message, {"from": "json", "n": 2}]


def test_cbor_read_and_write_round_trip_with_json(cbor_client, connect, channel):
    cbor = cbor_client()
    written = cbor.request("rtm/write", {"channel": channel, "message": {"level": 7}})
    assert written["action"] == "rtm/write/ok"
    assert connect().read(channel)["message"] == {"level": 7}
    read = cbor.request("rtm/read", {"channel": channel})
    assert read["body"]["message"] == {"level": 7}


@pytest.mark.parametrize(
    "value",
    [b"bytes", cbor2.undefined, cbor2.CBORTag(4000, 1), float("nan"), float("inf"), {1: "one"}, 2**70],
    ids=["byte-string", "undefined", "tag", "nan", "infinity", "integer-key", "bignum"],
)
def test_a_value_json_cannot_carry_is_an_invalid_message_reply_and_the_connection_stays(
    cbor_client, channel, value
):
    cbor = cbor_client()
    cbor.send({"action": "rtm/publish", "id": 41, "body": {"channel": channel, "message": value}})
    reply = cbor.receive()
    assert (reply["action"], reply["id"], reply["body"]["code"]) == (
        "rtm/publish/error",
        41,
        "invalid_message",
    )
    assert cbor.request("rtm/read", {"channel": channel})["action"] == "rtm/read/ok"


def test_a_frame_that_is_not_cbor_gets_bad_schema_in_cbor_then_a_close(cbor_client):
    cbor = cbor_client()
    cbor.ws.send(b"\xff\xff")
    reply = cbor.receive()
    assert reply["body"]["error"] == "bad_schema"
    with pytest.raises(ConnectionClosed):
        cbor.receive()
    assert cbor.ws.close_code == 1000


def test_the_size_limit_applies_to_the_cbor_bytes(cbor_client, channel):
    cbor = cbor_client()
    # 1 MiB of CBOR bytes plus a little: over the frame limit whatever its JSON size would be.
    cbor.send({"action": "rtm/publish", "id": 1, "body": {"channel": channel, "message": "x" * (1 << 20)}})
    with pytest.raises(ConnectionClosed):
        cbor.receive()
    assert cbor.ws.close_code == 1009


def test_a_cbor_subscriber_with_a_filter_gets_the_projection(cbor_client, connect, channel):
    cbor = cbor_client()
    reply = cbor.request(
        "rtm/subscribe", {"subscription_id": "s", "filter": f"select n from `{channel}` where n > 1"}
    )
    assert reply["action"] == "rtm/subscribe/ok"
    publisher = connect()
    for n in (1, 2, 3):
        publisher.publish(channel, {"n": n, "other": "x"})
    assert [cbor.next_data()["body"]["messages"] for _ in range(2)] == [[{"n": 2}], [{"n": 3}]]


def test_a_cbor_subscriber_with_history_gets_the_replay_in_cbor(cbor_client, connect, channel):
    publisher = connect()
    for n in range(4):
        publisher.publish(channel, {"n": n})
    cbor = cbor_client()
    reply = cbor.request("rtm/subscribe", {"channel": channel, "history": {"count": 2}})
    assert reply["action"] == "rtm/subscribe/ok"
    publisher.publish(channel, {"n": 4})
    assert [cbor.next_data()["body"]["messages"] for _ in range(3)] == [[{"n": 2}], [{"n": 3}], [{"n": 4}]]
