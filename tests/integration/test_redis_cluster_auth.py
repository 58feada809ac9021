"""A password-protected Redis Cluster shard: the URL's password reaches every master it finds (publishers,
sharded Pub/Sub readers, history reads), and a wrong one is refused by ``shards add``."""

from __future__ import annotations

import pytest

from app.channels import channel_key
from app.config_store import ConfigStore
from app.engine.cluster_slots import key_slot
from app.models import Shard
from tests.support.redis_cluster import RedisCluster
from tests.support.sharded import APP, ShardedCluster, data_messages, make_app

PASSWORD = "s3cret/with:odd@chars"


class Deployment(ShardedCluster):
    def __init__(self, tmp_path) -> None:
        super().__init__(tmp_path, shard_count=0)
        self.redis_cluster = RedisCluster(tmp_path / "cluster", masters=3, replicas=0, password=PASSWORD)

    def start(self, **app_settings) -> Deployment:
        self.redis_cluster.start()
        self.config.start()
        self.store = ConfigStore.from_url(self.config.url)
        self.store.put_app(make_app(**app_settings))
        return self

    def stop(self) -> None:
        super().stop()
        self.redis_cluster.stop()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    built = Deployment(tmp_path_factory.mktemp("authcluster")).start(history_max_length=100)
    yield built
    built.stop()


def test_a_wrong_password_is_refused(deployment):
    wrong = deployment.redis_cluster.url.replace("s3cret", "wrong")
    added = deployment.cli("shards", "add", "cl", wrong)
    assert added.returncode != 0
    assert "no node of the cluster answered" in added.stderr + added.stdout
    for leaked in ("wrong/with:odd@chars", "wrong%2Fwith%3Aodd%40chars"):  # the URL's password, either way
        assert leaked not in added.stderr + added.stdout


def test_publish_subscribe_and_history_through_a_password_protected_cluster(deployment):
    url = deployment.redis_cluster.url
    added = deployment.cli("shards", "add", "cl", url)
    assert added.returncode == 0, added.stderr
    assert deployment.store.shards() == (Shard("cl", url),)
    broker = deployment.broker({"COBRA_SHARD_PROBE_INTERVAL": "0.5"})
    slots = {key_slot(channel_key(APP, f"auth-{i}").encode()) // 5462 for i in range(6)}
    assert len(slots) > 1  # the channels span several masters
    subscriber, publisher = deployment.client(broker), deployment.client(broker)
    channels = [f"auth-{i}" for i in range(6)]
    for channel in channels:
        subscriber.subscribe(channel)
    for i, channel in enumerate(channels):
        publisher.publish(channel, {"n": i})
    got = data_messages(subscriber, len(channels), timeout=20)
    assert sorted(m["message"]["n"] for m in got) == list(range(len(channels)))
    assert publisher.read(channels[3])["message"] == {"n": 3}
