"""The cluster's connection registry (``app.cluster``), read back from Redis the way the admin panel reads
it (:func:`app.cluster.registered_connections`): each entry follows its connection's subscriptions, and a
connection an admin asked to close is gone from it at once. A real broker process, real Redis."""

from __future__ import annotations

import redis

from app import cluster
from tests.conftest import TEST_APP
from tests.support.processes import RedisProcess, wait_until


def entry(store, connection_id: str) -> dict | None:
    return next(
        (c for c in cluster.registered_connections(store.redis, TEST_APP) if c["id"] == connection_id), None
    )


def subscriptions_listed(store, connection_id: str, expected: int) -> bool:
    found = entry(store, connection_id)
    return found is not None and found["subscriptions"] == expected


def test_the_registry_entry_follows_subscribes_and_unsubscribes(connect, store, channel):
    client = connect()
    wait_until(lambda: subscriptions_listed(store, client.connection_id, 0), message="registered")
    for n in range(3):
        client.subscribe(f"{channel}-{n}")
    wait_until(lambda: subscriptions_listed(store, client.connection_id, 3), message="3 subscriptions listed")
    client.unsubscribe(f"{channel}-0")
    wait_until(lambda: subscriptions_listed(store, client.connection_id, 2), message="2 subscriptions listed")


def test_a_subscribe_storm_costs_one_registry_write_per_heartbeat_not_one_per_subscribe(tmp_path):
    server = RedisProcess(tmp_path / "redis")
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        sessions: dict = {}
        node = cluster.Cluster(client, "node-a", {"pid": 1}, lambda: sessions, lambda cid: None)
        node._flush(full_sync=True)
        client.config_resetstat()
        for n in range(1000):  # what 1000 subscribes of one connection announce
            node.connection_changed("c1", {"id": "c1", "app": TEST_APP, "subscriptions": n + 1})
        assert hset_calls(client) == 0  # nothing written in the hot path
        node._flush(full_sync=False)  # the heartbeat
        assert hset_calls(client) == 2  # the connections hash (one entry), the node's own beat
        (listed,) = cluster.registered_connections(client, TEST_APP)
        assert listed["subscriptions"] == 1000
    finally:
        server.stop()


def hset_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_hset", {}).get("calls", 0))


def test_a_connection_asked_to_close_leaves_the_registry_at_once(connect, store):
    client = connect()
    wait_until(lambda: entry(store, client.connection_id) is not None, message="registered")
    assert cluster.request_close(store.redis, client.connection_id, TEST_APP)
    assert entry(store, client.connection_id) is None
    assert not cluster.request_close(store.redis, client.connection_id, TEST_APP)  # already gone
