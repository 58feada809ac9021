"""A client that stops reading is disconnected; the broker and everyone else carry on.

Since PROTOCOL §7 sheds a slow client's subscription pushes first (tests/integration/test_fast_forward.py),
the slow client here also asks for ~15 MB of replies it never reads: replies cannot be shed, so its queue
stays over the limit and the connection is closed. The pending-bytes limit comes from the broker-wide
setting or, when set, from the app's settings in the config store (changed by an admin while the slow
client is already connected).
"""

from __future__ import annotations

import dataclasses
import socket
import uuid

from app.client import CobraClient
from app.models import PERMISSIONS, App, AppSettings, Role
from bench.wsclient import RawWebSocket, authenticate
from tests.conftest import TEST_APP
from tests.support.processes import BrokerProcess, can_authenticate, wait_until

SMALL_QUEUE = 256 << 10
SECRET = "slow-consumer-secret-0123456789ab"
BIG = {"blob": "z" * 50_000}


def start_slow_reader(
    broker: BrokerProcess, app_key: str, secret: str, channel: str
) -> tuple[RawWebSocket, str]:
    """A subscriber with a tiny receive buffer that, once subscribed, never reads again."""
    slow = RawWebSocket(broker.port, app_key)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow_id = authenticate(slow, "pubsub", secret)
    slow.send_json({"action": "rtm/subscribe", "id": 3, "body": {"channel": channel}})
    assert slow.recv_json()["action"] == "rtm/subscribe/ok"
    slow.send_json({"action": "rtm/write", "id": 4, "body": {"channel": channel + "-value", "message": BIG}})
    assert slow.recv_json()["action"] == "rtm/write/ok"
    return slow, slow_id


def ask_without_reading(slow: RawWebSocket, channel: str) -> None:
    """~15 MB of ``rtm/read`` replies the slow client will never read (output that cannot be shed)."""
    for i in range(300):
        slow.send_json({"action": "rtm/read", "id": 10 + i, "body": {"channel": channel + "-value"}})


def flood_and_check(
    broker: BrokerProcess, app_key: str, secret: str, channel: str, slow: RawWebSocket, slow_id: str
) -> None:
    """~10 MB to the channel: a healthy subscriber gets all of it, the slow one is disconnected."""
    ask_without_reading(slow, channel)
    with (
        CobraClient(broker.endpoint, app_key, "pubsub", secret) as healthy,
        CobraClient(broker.endpoint, app_key, "pubsub", secret) as publisher,
    ):
        healthy.subscribe(channel)
        message = {"blob": "y" * 10_000}
        # ~10 MB for the slow client: more than the kernel's socket buffers (up to 4 MiB on Linux) can hide,
        # and far over its 256 KiB queue (but under the 8 MiB default, so the small limit is what acts)
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


def test_slow_consumer_is_disconnected_and_others_get_everything(broker_factory, test_apps, channel):
    broker = broker_factory(env={"COBRA_SEND_QUEUE_MAX_BYTES": str(SMALL_QUEUE)})
    secret = test_apps[TEST_APP].roles["pubsub"].secret
    slow, slow_id = start_slow_reader(broker, TEST_APP, secret, channel)
    flood_and_check(broker, TEST_APP, secret, channel, slow, slow_id)
    slow.close()
    assert "slow consumer" in broker.output()


def test_the_app_setting_sets_the_pending_bytes_limit_of_live_connections(broker, store, channel):
    """The session broker keeps its 8 MiB default; the app's own 256 KiB limit, set after the slow client
    connected, is what disconnects it."""
    key = f"slow-{uuid.uuid4().hex[:8]}"
    app = App(key=key, roles={"pubsub": Role(name="pubsub", secret=SECRET, permissions=PERMISSIONS)})
    store.put_app(app)
    try:
        wait_until(
            lambda: can_authenticate(broker, key, "pubsub", SECRET), message="app visible to the broker"
        )
        slow, slow_id = start_slow_reader(broker, key, SECRET, channel)
        # The new limit travels with a new role, so the test can see when the broker has the new config.
        limited = dataclasses.replace(
            app,
            roles={**app.roles, "probe": Role(name="probe", secret=SECRET)},
            settings=AppSettings(send_queue_max_bytes=SMALL_QUEUE),
        )
        store.put_app(limited)
        wait_until(lambda: can_authenticate(broker, key, "probe", SECRET), message="new settings applied")
        flood_and_check(broker, key, SECRET, channel, slow, slow_id)
        slow.close()
        assert f"slow consumer, over {SMALL_QUEUE} bytes queued" in broker.output()
    finally:
        store.delete_app(key)
