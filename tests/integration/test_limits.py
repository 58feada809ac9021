"""Every limit, hit on purpose: each ends in a clear error (or refusal) and nothing else breaks."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus

from app.client import CobraClient
from tests.support.apps import configured_apps
from tests.support.processes import wait_until

SECRET = "limit-secret-0123456789abcdefghij"


@pytest.fixture
def limited_app(store):
    """An app with its own limits; returns a function that applies settings and waits for the broker."""
    with configured_apps(store, "limits", SECRET, fresh_key=False) as configure:
        yield configure


def test_publish_rate_limit_answers_rate_limited(broker, limited_app):
    key = limited_app(broker, publish_rate=5)
    with CobraClient(broker.endpoint, key, "r", SECRET) as client:
        codes = []
        for i in range(40):
            reply = client.request("rtm/publish", {"channel": "c", "message": i}, check=False)
            codes.append(reply["body"].get("code"))
        assert "rate_limited" in codes
        assert codes[0] is None  # a burst is allowed first
        assert client.read("c")["message"] is not None  # the connection still works


def test_message_size_limit_per_app(broker, limited_app):
    key = limited_app(broker, max_message_size=100)
    with CobraClient(broker.endpoint, key, "r", SECRET) as client:
        assert client.publish("c", "x" * 50)["channels"] == ["c"]
        reply = client.request("rtm/publish", {"channel": "c", "message": "x" * 200}, check=False)
        assert reply["body"]["code"] == "message_too_large"
        reply = client.request("rtm/write", {"channel": "c", "message": "x" * 200}, check=False)
        assert reply["body"]["code"] == "message_too_large"


def test_subscription_limit_per_app(broker, limited_app):
    key = limited_app(broker, max_subscriptions=1)
    with CobraClient(broker.endpoint, key, "r", SECRET) as client:
        client.subscribe("a")
        assert (
            client.request("rtm/subscribe", {"channel": "b"}, check=False)["body"]["code"]
            == "subscription_limit"
        )


def test_connection_limit_per_app_refuses_with_429(broker, limited_app):
    key = limited_app(broker, max_connections=2)
    # the probe connection of limited_app has closed; wait until the broker has counted it out
    first = CobraClient(broker.endpoint, key, "r", SECRET)
    wait_until(lambda: _try_connect(broker, key) is None, message="second slot available")
    second = CobraClient(broker.endpoint, key, "r", SECRET)
    assert _try_connect(broker, key) == 429
    first.close()
    wait_until(lambda: _try_connect(broker, key) is None, message="a slot frees when a client leaves")
    second.close()


def test_connection_limit_per_app_holds_across_broker_processes(broker, broker_factory, limited_app):
    """Two processes on one config Redis are one broker: one connection on each fills a limit of 2."""
    other = broker_factory()
    key = limited_app(broker, max_connections=2)
    wait_until(lambda: _try_connect(other, key) is None, message="app visible to the second process")
    here = CobraClient(broker.endpoint, key, "r", SECRET)
    there = CobraClient(other.endpoint, key, "r", SECRET)
    # Each process holds only one connection of the app; the refusal comes from the shared count.
    wait_until(lambda: _try_connect(broker, key) == 429, message="limit seen by the first process")
    wait_until(lambda: _try_connect(other, key) == 429, message="limit seen by the second process")
    here.close()
    wait_until(lambda: _try_connect(other, key) is None, message="a slot frees on the other process")
    there.close()


def test_connection_limit_per_ip_refuses_with_429(broker, limited_app):
    key = limited_app(broker, max_connections_per_ip=1)
    holder = CobraClient(broker.endpoint, key, "r", SECRET)
    wait_until(lambda: _try_connect(broker, key) == 429, message="per-IP limit reached")
    holder.close()


def _try_connect(broker, key):
    """None when a connection is accepted (and closed at once), else the HTTP status of the refusal."""
    try:
        CobraClient(broker.endpoint, key, "r", SECRET, timeout=3).close()
        return None
    except InvalidStatus as exc:
        return exc.response.status_code


def test_oversized_frame_is_refused_before_it_is_buffered(broker, test_apps):
    from bench.wsclient import RawWebSocket
    from tests.conftest import TEST_APP

    ws = RawWebSocket(broker.port, TEST_APP)
    # Announce a 1 GiB frame and send only its header: the broker must refuse without waiting for the body.
    ws.sock.sendall(bytes([0x81, 0xFF]) + (1 << 30).to_bytes(8, "big") + b"\x00\x00\x00\x00")
    assert ws.recv_close().close_code == 1009
    ws.close()
