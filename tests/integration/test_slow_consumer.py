"""A client that stops reading is disconnected; the broker and everyone else carry on."""

from __future__ import annotations

import socket

from app.client import CobraClient
from tests.conftest import TEST_APP
from tests.support.raw_ws import RawWebSocket, authenticate


def test_slow_consumer_is_disconnected_and_others_get_everything(broker_factory, test_apps, channel):
    broker = broker_factory(env={"COBRA_SEND_QUEUE_MAX_BYTES": str(256 << 10)})
    secret = test_apps[TEST_APP].roles["pubsub"].secret

    slow = RawWebSocket(broker.port, TEST_APP)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    authenticate(slow, "pubsub", secret)
    slow.send_json({"action": "rtm/subscribe", "id": 3, "body": {"channel": channel}})
    assert slow.recv_json()["action"] == "rtm/subscribe/ok"
    # ...and from now on it never reads.

    with (
        CobraClient(broker.endpoint, TEST_APP, "pubsub", secret) as healthy,
        CobraClient(broker.endpoint, TEST_APP, "pubsub", secret) as publisher,
    ):
        healthy.subscribe(channel)
        message = {"blob": "y" * 10_000}
        count = 300  # ~3 MB for the slow client: far over its 256 KiB queue
        for i in range(count):
            publisher.send(
                {"action": "rtm/publish", "id": i, "body": {"channel": channel, "message": message}}
            )
        received = 0
        while received < count:
            push = healthy.next_push(timeout=10)
            if push["action"] == "rtm/subscription/data":
                received += len(push["body"]["messages"])
        assert received == count

        admin_ids = healthy.request("admin/get_connections")["body"]["connections"]
    # The slow client is gone from the broker; reading its socket now ends (after what was buffered).
    assert slow.at_eof(timeout=15)
    assert healthy.connection_id in admin_ids
    slow.close()
    assert "slow consumer" in broker.output()
