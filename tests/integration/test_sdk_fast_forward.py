"""A slow subscriber in the SDKs' default SIMPLE mode (``fast_forward: true``) is shed, not dropped
(PROTOCOL §7, issue 15): once its pending output passes the app's ``send_queue_max_bytes``, the broker drops
the pushes queued for it, sends ``rtm/subscription/info`` ``fast_forward``, and the same connection carries on
with new messages.

The public SDKs, unchanged (tests/support/satori_sdk.py), in JSON and in CBOR mode. The subscriber stops
reading (its process is frozen with SIGSTOP, then thawed) while a JSON publisher floods the channel with far
more than the limit plus what the kernel's socket buffers can hold.

This needs the broker's shedding (issue 15 item 3): without it the slow connection is closed, the SDK
reconnects and resubscribes, and the test fails waiting for the info PDU.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.client import CobraClient
from app.config_store import ConfigStore
from app.models import PERMISSIONS, App, AppSettings, Role
from tests.support.processes import BrokerProcess, can_authenticate, wait_until
from tests.support.satori_sdk import MODE_IDS, MODES, SdkDriver, install_sdk

pytestmark = pytest.mark.slow

SECRET = "sdk-fast-forward-secret-0123456789"
SMALL_QUEUE = 256 << 10
# 20 MB: far over the 256 KiB limit plus what the kernel buffers on loopback for a socket nobody reads
FLOOD = 400
BLOB = "y" * 50_000
AFTER = 5


@pytest.fixture
def slow_app(store: ConfigStore, broker: BrokerProcess) -> Iterator[str]:
    """An app of its own whose connections may queue only 256 KiB (the session broker keeps its default)."""
    key = f"ffwd-{uuid.uuid4().hex[:8]}"
    store.put_app(
        App(
            key=key,
            roles={"pubsub": Role(name="pubsub", secret=SECRET, permissions=PERMISSIONS)},
            settings=AppSettings(send_queue_max_bytes=SMALL_QUEUE),
        )
    )
    try:
        wait_until(lambda: can_authenticate(broker, key, "pubsub", SECRET), timeout=30, message="app visible")
        yield key
    finally:
        store.delete_app(key)


def flood(publisher: CobraClient, channel: str) -> None:
    """FLOOD publishes pipelined, then every ack: once they are in, Redis holds every message."""
    for i in range(FLOOD):
        publisher.send(
            {
                "action": "rtm/publish",
                "id": i,
                "body": {"channel": channel, "message": {"i": i, "blob": BLOB}},
            }
        )
    acked = 0
    while acked < FLOOD:
        reply = publisher.receive(timeout=60)
        assert reply["action"] == "rtm/publish/ok", reply
        acked += 1


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_a_slow_subscriber_in_simple_mode_gets_fast_forward_info_and_carries_on(
    mode: tuple[str, str], broker: BrokerProcess, slow_app: str, tmp_path: Path, channel: str
) -> None:
    sdk, protocol = mode
    install_sdk(sdk)
    endpoint = f"ws://127.0.0.1:{broker.port}"
    driver = SdkDriver(sdk, protocol, endpoint, slow_app, "pubsub", SECRET, tmp_path)
    try:
        driver.connected()
        assert driver.subscribe(channel)["event"] == "subscribed"  # SIMPLE mode: fast_forward: true
        driver.stop_reading()
        with CobraClient(broker.endpoint, slow_app, "pubsub", SECRET, timeout=60) as publisher:
            flood(publisher, channel)
            driver.resume_reading()
            info = driver.wait_event("info", timeout=60, id=channel)
            assert info["info"] == "fast_forward"
            for k in range(AFTER):
                publisher.publish(channel, {"after": k})
            expected_after = [{"after": k} for k in range(AFTER)]
            driver.wait_until(
                lambda: [m for m in driver.messages(channel) if "after" in m] == expected_after,
                timeout=60,
                what="the messages published after the fast-forward",
            )

        events = driver.events
        info_at = events.index(info)
        after_at = next(
            i
            for i, e in enumerate(events)
            if e["event"] == "data" and any("after" in m for m in e["messages"])
        )
        assert info_at < after_at, "the new messages come after the fast-forward notice"
        # the same connection carried on: no disconnect, no reconnect and resubscribe
        assert not driver.named("disconnected")
        assert len(driver.named("connected")) == 1

        received = [m["i"] for m in driver.messages(channel) if "i" in m]
        assert received == sorted(set(received)), "no duplicate, no reordering"
        assert len(received) < FLOOD, "a slow subscriber cannot have been sent everything"
        infos = [e for e in driver.named("info") if e["id"] == channel]
        assert all(e["info"] == "fast_forward" for e in infos)
        # the JavaScript SDK hands over the whole PDU; the Python one only the subscription id
        if sdk == "js":
            for e in infos:
                body = e["body"]
                assert body["subscription_id"] == channel
                assert body["messages"] == [] and body["position"]  # PROTOCOL §7 MUST
                assert body["missed_message_count"] > 0
            # missed_message_count counts exactly the messages it will never get
            assert len(received) + sum(e["body"]["missed_message_count"] for e in infos) == FLOOD
    finally:
        driver.close()
