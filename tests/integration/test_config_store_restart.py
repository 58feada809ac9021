"""The config Redis goes away and comes back: brokers keep serving with the last config they loaded, and
pick up changes again once it answers. A store that comes back empty never locks clients out."""

from __future__ import annotations

import dataclasses

import pytest
import redis

from app.client import CobraClient
from app.models import Role
from tests.integration.test_readiness import get
from tests.support.processes import can_authenticate, wait_until
from tests.support.sharded import APP, SECRET, Collector, ShardedCluster, make_app

KEEPING_LAST_CONFIG = "config store unreachable, keeping the last config"


@pytest.fixture
def cluster(tmp_path):
    deployment = ShardedCluster(tmp_path).start(history_max_length=1000)
    yield deployment
    deployment.stop()


def publish_and_receive(publisher: CobraClient, collector: Collector, channel: str, count: int) -> None:
    """``count`` acknowledged publishes, all seen by the subscriber on the other broker."""
    for n in range(count):
        publisher.publish(channel, {"n": n})

    def received() -> bool:
        with collector.lock:
            got = [m["n"] for _, m in collector.messages.get(channel, []) if isinstance(m, dict)]
        return got[-count:] == list(range(count))

    wait_until(received, message=f"{count} messages on {channel}")


def test_brokers_serve_the_last_config_while_the_config_redis_restarts(cluster):
    env = {"COBRA_CONFIG_POLL_INTERVAL": "0.2"}
    first, second = cluster.broker(env), cluster.broker(env)
    publisher, subscriber = cluster.client(first), cluster.client(second)
    subscriber.subscribe("during", subscription_id="during")
    subscriber.subscribe("after", subscription_id="after")
    collector = Collector(subscriber)
    publish_and_receive(publisher, collector, "during", 5)

    cluster.config.stop()
    for broker in (first, second):
        wait_until(lambda b=broker: get(b.http + "/ready/")[0] == 503, message="readiness red")
        wait_until(lambda b=broker: KEEPING_LAST_CONFIG in b.output(), message="config store loss noticed")
    # Live connections carry on, and new clients still authenticate against the config in memory.
    publish_and_receive(publisher, collector, "during", 20)
    assert can_authenticate(first, APP, "pubsub", SECRET) and can_authenticate(second, APP, "pubsub", SECRET)

    cluster.config.start()
    for broker in (first, second):
        wait_until(lambda b=broker: get(b.http + "/ready/") == (200, "ready\n"), timeout=30, message="ready")
    # A change written after the restart reaches both brokers: they reload by themselves.
    app = cluster.store.get_app(APP)
    cluster.store.put_app(
        dataclasses.replace(app, roles={**app.roles, "late": Role(name="late", secret=SECRET)})
    )
    for broker in (first, second):
        wait_until(
            lambda b=broker: can_authenticate(b, APP, "late", SECRET),
            timeout=15,
            message="change after restart",
        )
    publish_and_receive(publisher, collector, "after", 20)
    # The cluster registry was rewritten: both processes' connections are listed again.
    ids = wait_until(
        lambda: (
            {subscriber.connection_id, publisher.connection_id}
            <= set(publisher.request("admin/get_connections")["body"]["connections"])
        ),
        message="connections listed after the restart",
    )
    assert ids
    for broker in (first, second):
        assert broker.process.poll() is None
        assert "Traceback" not in broker.output()
    collector.stopping.set()


def test_an_emptied_config_store_does_not_lock_clients_out(cluster):
    broker = cluster.broker({"COBRA_CONFIG_POLL_INTERVAL": "0.2"})
    client = cluster.client(broker)
    client.subscribe("kept")
    redis.Redis.from_url(cluster.config.url).flushall()
    wait_until(lambda: "the config store is empty" in broker.output(), message="empty store noticed")
    assert can_authenticate(broker, APP, "pubsub", SECRET)
    assert client.publish("kept", {"still": "here"})["position"]
    # Writing a config again (an import after the loss) is applied as usual, even with a lower version.
    cluster.store.set_shards(cluster.shard_list())
    cluster.store.put_apps([make_app(key="afterloss")])
    wait_until(lambda: can_authenticate(broker, "afterloss", "pubsub", SECRET), message="new config applied")
    assert not can_authenticate(broker, APP, "pubsub", SECRET), (
        "the written config is the whole config: the lost app is gone"
    )
