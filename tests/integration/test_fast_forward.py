"""Slow subscribers are shed, not dropped (PROTOCOL §7), over real sockets against a real broker and Redis.

A subscriber with a tiny receive buffer stops reading while ~10 MB are published to its channel (more than
the kernel's socket buffers can hide, far over its 256 KiB pending-bytes limit). A ``fast_forward``
subscription loses the pushes still queued for it, is told exactly how many (``rtm/subscription/info``) and
carries on; any other is told it is out of sync and removed, the connection staying open; only output that
cannot be shed closes the connection. Every published message is either received or counted as missed.
"""

from __future__ import annotations

import socket
from typing import Any

import cbor2
import pytest

from app.auth import compute_hash
from app.client import CobraClient
from bench.wsclient import OP_BINARY, OP_CLOSE, OP_TEXT, RawWebSocket
from tests.conftest import OTHER_APP as TEST_APP  # no per-app history bound: the broker-wide one
from tests.support.processes import BrokerProcess, wait_until

SMALL_QUEUE = 256 << 10
FLOOD = 1000  # messages of ~10 KB: ~10 MB
BLOB = "y" * 10_000
# The slow clients say nothing for as long as a loaded machine takes to flood them: keepalive must not be
# what ends them.
SLOW_ENV = {
    "COBRA_SEND_QUEUE_MAX_BYTES": str(SMALL_QUEUE),
    "COBRA_HISTORY_MAX_LENGTH": "5000",
    "COBRA_HISTORY_MAX_BYTES": str(64 << 20),  # the ~10 MB flood stays in history for the resubscribe
    "COBRA_PING_INTERVAL": "600",
}


class SlowClient:
    """A raw client that reads only when told to, in JSON or CBOR (PROTOCOL §10)."""

    def __init__(self, broker: BrokerProcess, secret: str, encoding: str = "json") -> None:
        headers = {"Sec-WebSocket-Protocol": "cbor"} if encoding == "cbor" else None
        self.ws = RawWebSocket(broker.port, TEST_APP, headers)
        self.ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.cbor = encoding == "cbor"
        self.ids = 100
        handshake = self.request("auth/handshake", {"method": "role_secret", "data": {"role": "pubsub"}})
        data = handshake["body"]["data"]
        self.connection_id = data["connection_id"]
        credentials = {"hash": compute_hash(secret, data["nonce"])}
        reply = self.request("auth/authenticate", {"method": "role_secret", "credentials": credentials})
        assert reply["action"] == "auth/authenticate/ok", reply

    def send(self, action: str, body: dict[str, Any]) -> int:
        self.ids += 1
        pdu = {"action": action, "id": self.ids, "body": body}
        if self.cbor:
            self.ws.send_frame(OP_BINARY, cbor2.dumps(pdu))
        else:
            self.ws.send_json(pdu)
        return self.ids

    def read_faster(self) -> None:
        """Done being slow: a normal receive buffer again."""
        self.ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        # Linux clamped the window to the small buffer; without lifting the clamp, a few MB take minutes.
        self.ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_WINDOW_CLAMP, 1 << 20)

    def _next_frame(self, timeout: float) -> Any:
        """RawWebSocket.recv_frame, acknowledging at once: through a 4 KiB window, delayed ACKs (~40 ms
        each) would make reading back a few MB take minutes."""
        ws, sock = self.ws, self.ws.sock
        sock.settimeout(timeout)
        while not ws.frames:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("connection closed")
            ws.buffer += chunk
            ws._take_frames()
        return ws.frames.popleft()

    def receive(self, timeout: float = 30.0) -> dict[str, Any]:
        while True:
            frame = self._next_frame(timeout)
            if frame.opcode == OP_CLOSE:
                raise ConnectionError(f"closed with {frame.close_code}")
            if frame.opcode == OP_BINARY:
                assert self.cbor, "binary frames only on a CBOR connection"
                return cbor2.loads(frame.payload)
            if frame.opcode == OP_TEXT:
                assert not self.cbor, "a CBOR connection gets binary frames only"
                return frame.json()

    def request(self, action: str, body: dict[str, Any], pushes: list | None = None) -> dict[str, Any]:
        pdu_id = self.send(action, body)
        while True:
            pdu = self.receive()
            if pdu.get("id") == pdu_id and pdu["action"].startswith(action + "/"):
                return pdu
            assert pushes is not None, pdu
            pushes.append(pdu)


def flood(broker: BrokerProcess, secret: str, channel: str, count: int = FLOOD) -> dict[int, str]:
    """Publish ``count`` big messages ``{"i": n, "blob": ...}``; returns n → position, as a healthy
    subscriber of the channel received them (so the broker has routed them all when this returns)."""
    with (
        CobraClient(broker.endpoint, TEST_APP, "pubsub", secret) as healthy,
        CobraClient(broker.endpoint, TEST_APP, "pubsub", secret) as publisher,
    ):
        healthy.subscribe(channel)
        for i in range(count):
            body = {"channel": channel, "message": {"i": i, "blob": BLOB}}
            publisher.send({"action": "rtm/publish", "id": i, "body": body})
        positions: dict[int, str] = {}
        while len(positions) < count:
            push = healthy.next_push(timeout=30)
            if push["action"] == "rtm/subscription/data":
                for message in push["body"]["messages"]:
                    positions[message["i"]] = push["body"]["position"]
        return positions


def publish_small(broker: BrokerProcess, secret: str, channel: str, numbers: range) -> None:
    with CobraClient(broker.endpoint, TEST_APP, "pubsub", secret) as publisher:
        for i in numbers:
            publisher.publish(channel, {"i": i})


def connection_ids(broker: BrokerProcess, secret: str) -> list[str]:
    with CobraClient(broker.endpoint, TEST_APP, "pubsub", secret) as probe:
        return probe.request("admin/get_connections")["body"]["connections"]


def check_notice(pdu: dict[str, Any], sub_id: str) -> None:
    """PROTOCOL §7 MUST: every info/error carries ``messages: []`` and a non-null position."""
    body = pdu["body"]
    assert body["subscription_id"] == sub_id
    assert body["messages"] == [] and isinstance(body["position"], str) and body["position"]
    assert isinstance(body["missed_message_count"], int) and body["missed_message_count"] > 0


@pytest.mark.parametrize("encoding", ["json", "cbor"])
def test_a_fast_forward_subscription_is_told_what_it_missed_and_carries_on(
    broker_factory, test_apps, channel, encoding
):
    broker = broker_factory(env=SLOW_ENV)
    secret = test_apps[TEST_APP].roles["pubsub"].secret
    slow = SlowClient(broker, secret, encoding)
    reply = slow.request("rtm/subscribe", {"channel": channel, "fast_forward": True})
    assert reply["action"] == "rtm/subscribe/ok"
    positions = flood(broker, secret, channel)  # the slow client reads nothing meanwhile
    slow.read_faster()

    received: list[int] = []
    infos: list[dict[str, Any]] = []
    ids: list[int] = []
    while len(received) + sum(i["body"]["missed_message_count"] for i in infos) < FLOOD:
        pdu = slow.receive()
        ids.append(pdu["id"])
        if pdu["action"] == "rtm/subscription/info":
            check_notice(pdu, channel)
            assert pdu["body"]["info"] == "fast_forward" and pdu["body"]["reason"]
            infos.append(pdu)
        else:
            assert pdu["action"] == "rtm/subscription/data", pdu
            received.extend(m["i"] for m in pdu["body"]["messages"])
    assert infos, "the slow subscriber was never fast-forwarded"
    missed = sum(i["body"]["missed_message_count"] for i in infos)
    # No silent loss: what arrived plus what was counted as missed is exactly what was published.
    assert received == sorted(set(received)), "in order, no duplicate"
    assert len(received) + missed == FLOOD
    gone = set(range(FLOOD)) - set(received)
    assert len(gone) == missed
    # Each info names the position of the last message it dropped.
    dropped_positions = {positions[i] for i in gone}
    assert all(info["body"]["position"] in dropped_positions for info in infos)
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "notices take their place in the push ids"

    # Same connection, same subscription: new messages keep coming.
    publish_small(broker, secret, channel, range(FLOOD, FLOOD + 20))
    later: list[int] = []
    while len(later) < 20:
        pdu = slow.receive()
        assert pdu["action"] == "rtm/subscription/data", pdu
        later.extend(m["i"] for m in pdu["body"]["messages"])
    assert later == list(range(FLOOD, FLOOD + 20))
    assert slow.connection_id in connection_ids(broker, secret)
    assert "shed" in broker.output()
    slow.ws.close()


def test_a_subscription_without_fast_forward_is_removed_out_of_sync_and_the_connection_stays(
    broker_factory, test_apps, channel
):
    """Each out_of_sync names the last message dropped; resubscribing from there (history) brings the rest
    (itself shed again when the replay outgrows the queue): received + missed = published, in order."""
    broker = broker_factory(env=SLOW_ENV)
    secret = test_apps[TEST_APP].roles["pubsub"].secret
    slow = SlowClient(broker, secret)
    assert slow.request("rtm/subscribe", {"channel": channel})["action"] == "rtm/subscribe/ok"
    positions = flood(broker, secret, channel)
    slow.read_faster()

    following = 0  # the next message expected, received or counted as missed
    received = missed = errors = 0
    pending: list[dict[str, Any]] = []
    while following < FLOOD:
        pdu = pending.pop(0) if pending else slow.receive()
        if pdu["action"] == "rtm/subscription/data":
            for message in pdu["body"]["messages"]:
                assert message["i"] == following, "in order, no gap, no duplicate"
                following += 1
                received += 1
            continue
        assert pdu["action"] == "rtm/subscription/error", pdu
        check_notice(pdu, channel)
        body = pdu["body"]
        assert body["code"] == "out_of_sync" and body["error"]
        # The dropped ones directly follow what arrived; the error names the last of them.
        following += body["missed_message_count"]
        missed += body["missed_message_count"]
        errors += 1
        assert body["position"] == positions[following - 1]
        # The connection is open and the subscription gone: the same id can be subscribed again.
        again = slow.request("rtm/subscribe", {"channel": channel, "position": body["position"]}, pending)
        assert again["action"] == "rtm/subscribe/ok", again
    assert errors >= 1 and received + missed == FLOOD
    assert slow.connection_id in connection_ids(broker, secret)
    slow.ws.close()


def test_the_connection_is_closed_when_shedding_is_not_enough(broker_factory, test_apps, channel):
    """Replies cannot be shed: a client that keeps asking and never reads the answers is disconnected,
    though it also had a fast_forward subscription whose pushes could be shed."""
    broker = broker_factory(env=SLOW_ENV)
    secret = test_apps[TEST_APP].roles["pubsub"].secret
    slow = SlowClient(broker, secret)
    assert slow.request("rtm/subscribe", {"channel": channel, "fast_forward": True})["action"].endswith("/ok")
    value_channel = channel + "-value"
    assert slow.request("rtm/write", {"channel": value_channel, "message": {"blob": "z" * 50_000}})[
        "action"
    ].endswith("/ok")
    publish_small(broker, secret, channel, range(5))  # a few pushes queued too
    for _ in range(300):  # ~15 MB of replies the client never reads
        slow.send("rtm/read", {"channel": value_channel})

    wait_until(
        lambda: slow.connection_id not in connection_ids(broker, secret),
        timeout=30,
        message="client with unsheddable output disconnected",
    )
    assert f"slow consumer, over {SMALL_QUEUE} bytes queued; disconnecting" in broker.output()
    slow.ws.close()


def test_an_expired_position_with_fast_forward_gets_the_info_then_the_oldest_retained(
    broker_factory, test_apps, channel
):
    broker = broker_factory(env={"COBRA_HISTORY_MAX_LENGTH": "5"})
    secret = test_apps[TEST_APP].roles["pubsub"].secret
    with CobraClient(broker.endpoint, TEST_APP, "pubsub", secret) as client:
        positions = [client.publish(channel, {"n": n})["position"] for n in range(12)]
        client.request("rtm/subscribe", {"channel": channel, "position": positions[1], "fast_forward": True})
        pdus = [client.next_push(timeout=10) for _ in range(6)]
    assert pdus[0]["action"] == "rtm/subscription/info", pdus[0]
    body = pdus[0]["body"]
    assert (body["info"], body["subscription_id"], body["messages"]) == ("fast_forward", channel, [])
    assert body["position"] == positions[7]  # the oldest of the 5 kept
    assert [m["n"] for p in pdus[1:] for m in p["body"]["messages"]] == [7, 8, 9, 10, 11]
