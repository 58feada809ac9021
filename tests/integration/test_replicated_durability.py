"""``durability: replicated`` on plain ``redis://`` shards (issue 17, item 3): ``WAIT`` works on any master.

Two single-node shards: ``lone`` has no replica, ``pair`` is a master with one replica (``replicaof``).
A replicated publish on ``lone`` is answered ``not_replicated``; on ``pair`` it is acknowledged, and the
replica holds it; asking for more replicas than ``pair`` has is ``not_replicated`` again. An app with the
default durability (``leader``) is acknowledged on both, as before.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import redis

from app.channels import channel_key
from app.client import CobraError
from app.embedded_redis import RedisProcess
from app.models import Shard
from tests.support.processes import wait_until
from tests.support.sharded import ShardedCluster, make_app

REPLICATED = "durableapp"  # min_replicas 1 (the default)
TWO_REPLICAS = "twoapp"  # min_replicas 2: more than ``pair`` has
LEADER = "leaderapp"


class PairCluster(ShardedCluster):
    """Config Redis, a lone node ``lone`` and a master ``pair`` with one replica."""

    def __init__(self, tmp_path) -> None:
        super().__init__(tmp_path, shard_count=0)
        self.lone = RedisProcess(tmp_path / "lone")
        self.master = RedisProcess(tmp_path / "master")
        self.replica = RedisProcess(
            tmp_path / "replica", extra_args=["--replicaof", "127.0.0.1", str(self.master.port)]
        )

    def shard_list(self) -> list[Shard]:
        return [Shard("lone", self.lone.url), Shard("pair", self.master.url)]

    def start(self, **app_settings) -> PairCluster:
        for server in (self.lone, self.master, self.replica):
            server.start()
        wait_until(self._replica_online, timeout=30, interval=0.1, message="the replica is online")
        super().start(**app_settings)
        assert self.store is not None
        for key, settings in (
            (REPLICATED, {}),
            (TWO_REPLICAS, {"min_replicas": 2, "replication_timeout": 0.2}),
            (LEADER, {}),
        ):
            app = make_app(key, **settings)
            self.store.put_app(app if key == LEADER else replace(app, durability="replicated"))
        return self

    def stop(self) -> None:
        super().stop()
        for server in (self.lone, self.master, self.replica):
            server.stop()

    def _replica_online(self) -> bool:
        client = redis.Redis.from_url(self.master.url)
        try:
            info = client.info("replication")
            return any(isinstance(v, dict) and v.get("state") == "online" for v in info.values())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def channel_on(self, shard: str, app: str) -> str:
        return next(f"d-{i}" for i in range(10_000) if self.shard_name_for(f"d-{i}", app) == shard)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    cluster = PairCluster(tmp_path_factory.mktemp("durability")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def broker(pair):
    return pair.broker()


def test_a_single_node_without_replicas_answers_not_replicated(pair, broker):
    client = pair.client(broker, app=REPLICATED, timeout=30)
    with pytest.raises(CobraError) as refused:
        client.publish(pair.channel_on("lone", REPLICATED), {"n": 1})
    assert refused.value.code == "not_replicated"
    # The same node acknowledges an app that asks for less (durability leader, the default).
    leader = pair.client(broker, app=LEADER, timeout=30)
    assert leader.publish(pair.channel_on("lone", LEADER), {"n": 1})["position"]


def test_a_master_with_a_replica_acknowledges_and_the_replica_holds_the_message(pair, broker):
    client = pair.client(broker, app=REPLICATED, timeout=30)
    channel = pair.channel_on("pair", REPLICATED)
    positions = [client.publish(channel, {"n": n})["position"] for n in range(20)]
    replica = redis.Redis.from_url(pair.replica.url)
    try:
        held = [entry_id.decode() for entry_id, _ in replica.xrange(channel_key(REPLICATED, channel))]
    finally:
        replica.close()
    # WAIT confirmed before the ack: the replica had each message when its publish was acknowledged.
    assert set(positions) <= set(held)


def test_more_replicas_than_the_master_has_is_not_replicated(pair, broker):
    client = pair.client(broker, app=TWO_REPLICAS, timeout=30)
    with pytest.raises(CobraError) as refused:
        client.publish(pair.channel_on("pair", TWO_REPLICAS), {"n": 1})
    assert refused.value.code == "not_replicated"
