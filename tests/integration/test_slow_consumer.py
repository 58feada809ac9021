"""A client that stops reading is disconnected; the broker and everyone else carry on."""

from __future__ import annotations

import socket

from app.client import CobraClient
from tests.conftest import TEST_APP
from tests.support.processes import wait_until
from tests.support.raw_ws import RawWebSocket, authenticate


def test_slow_consumer_is_disconnected_and_others_get_everything(broker_factory, test_apps, channel):
    broker = broker_factory(env={"COBRA_SEND_QUEUE_MAX_BYTES": str(256 << 10)})
    secret = test_apps[TEST_APP].roles["pubsub"].secret

    slow = RawWebSocket(broker.port, TEST_APP)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow_id = authenticate(slow, "pubsub", secret)
    slow.send_json({"action": "rtm/subscribe", "id": 3, "body": {"channel": channel}})
    assert slow.recv_json()["action"] == "rtm/subscribe/ok"
    # ...and from now on it never reads.

    with (
        CobraClient(broker.endpoint, TEST_APP, "pubsub", secret) as healthy,
        CobraClient(broker.endpoint, TEST_APP, "pubsub", secret) as publisher,
    ):
        healthy.subscribe(channel)
        message = {"blob": "y" * 10_000}
        # ~10 MB for the slow client: more than the kernel's socket buffers (up to 4 MiB on Linux) can hide,
        # and far over its 256 KiB queue
        count = 1000
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

        def slow_one_gone() -> bool:
            ids = healthy.request("admin/get_connections")["body"]["connections"]
            assert healthy.connection_id in ids
            return slow_id not in ids

        wait_until(slow_one_gone, timeout=30, message="slow consumer disconnected")
    slow.close()
    assert "slow consumer" in broker.output()
