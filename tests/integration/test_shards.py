"""Sharding over three real redis-servers: where channels live, where publish and subscribe meet, the
``shards`` CLI, and live shard changes while messages flow."""

from __future__ import annotations

import re
from collections import Counter

import pytest
import redis

from app.channels import channel_key
from app.shards import ShardRing
from tests.support.processes import RedisProcess, wait_until
from tests.support.sharded import APP, Blaster, Collector, ShardedCluster, data_messages

MOVED = re.compile(r"shard list now ([\w, .-]+); (\d+) local channel\(s\) moved")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    deployment = ShardedCluster(tmp_path_factory.mktemp("shards")).start(history_max_length=10_000)
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module")
def brokers(cluster):
    return cluster.broker(), cluster.broker()


def keys_on(server: RedisProcess, pattern: str) -> set[str]:
    client = redis.Redis.from_url(server.url)
    try:
        return {key.decode() for key in client.scan_iter(match=pattern, count=1000)}
    finally:
        client.close()


def test_channels_spread_over_the_three_shards_as_the_ring_says(cluster, brokers):
    client = cluster.client(brokers[0])
    channels = [f"spread-{i}" for i in range(60)]
    for channel in channels:
        client.publish(channel, {"c": channel})
    where = {name: keys_on(server, f"{APP}::spread-*") for name, server in cluster.shards.items()}
    for channel in channels:
        holders = [name for name, keys in where.items() if channel_key(APP, channel) in keys]
        assert holders == [cluster.shard_name_for(channel)], channel
    assert all(where.values()), f"a shard got no channel: { {n: len(k) for n, k in where.items()} }"


def test_publish_and_subscribe_meet_on_the_channel_shard(cluster, brokers):
    subscriber_broker, publisher_broker = brokers
    subscriber = cluster.client(subscriber_broker)
    channels = [c for name in cluster.shards for c in cluster.channels_on(name, 3, prefix="meet")]
    for channel in channels:
        subscriber.subscribe(channel)
    for name, server in cluster.shards.items():
        client = redis.Redis.from_url(server.url)
        subscribed = {c.decode() for c in client.pubsub_channels(f"{APP}::meet-*")}
        client.close()
        assert subscribed == {channel_key(APP, c) for c in channels if cluster.shard_name_for(c) == name}
    publisher = cluster.client(publisher_broker)
    for channel in channels:
        publisher.publish(channel, {"channel": channel})
    got = data_messages(subscriber, len(channels))
    assert sorted((m["sub"], m["message"]["channel"]) for m in got) == sorted((c, c) for c in channels)


def test_read_write_and_delete_use_the_channel_shard(cluster, brokers):
    client = cluster.client(brokers[0])
    channels = [c for name in cluster.shards for c in cluster.channels_on(name, 1, prefix="kv")]
    for channel in channels:
        client.write(channel, {"value": channel})
    for channel in channels:
        assert client.read(channel)["message"] == {"value": channel}
        assert cluster.redis_for(channel).exists(channel_key(APP, channel))
        client.delete(channel)
        assert client.read(channel)["message"] is None
        assert not cluster.redis_for(channel).exists(channel_key(APP, channel))


# --------------------------------------------------------------------------- the shards CLI
def test_shards_list_shows_each_shard_and_that_it_answers(cluster):
    result = cluster.cli("shards", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(cluster.shards)
    assert all("reachable" in line and "UNREACHABLE" not in line for line in lines)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["add", "s9", "redis://127.0.0.1:1/0"], "does not answer PING"),
        (["add", "bad name", "redis://127.0.0.1:1/0"], "shard name"),
        (["add", "s9", "http://example.com"], "redis://"),
        (["remove", "nope"], "no shard named 'nope'"),
    ],
)
def test_shards_cli_refuses_bad_changes_with_a_clear_error(cluster, args, error):
    before = cluster.store.version()
    result = cluster.cli("shards", *args)
    assert result.returncode == 1
    assert error in result.stderr
    assert cluster.store.version() == before  # nothing written


def test_shards_add_refuses_a_name_or_url_already_listed(cluster):
    first = next(iter(cluster.shards.values()))
    assert "already listed" in cluster.cli("shards", "add", "s0", first.url).stderr
    assert "already listed as shard 's0'" in cluster.cli("shards", "add", "other", first.url).stderr


# --------------------------------------------------------------------------- live changes under traffic
@pytest.fixture
def live_cluster(tmp_path):
    deployment = ShardedCluster(tmp_path).start(history_max_length=10_000)
    spare = RedisProcess(tmp_path / "spare")
    spare.start()
    yield deployment, spare
    spare.stop()
    deployment.stop()


def moves_logged(broker) -> list[tuple[str, int]]:
    return [(names, int(count)) for names, count in MOVED.findall(broker.output())]


def test_live_shard_add_and_remove_while_publishing_and_subscribing(live_cluster):
    cluster, spare = live_cluster
    publisher_broker, subscriber_broker = cluster.broker(), cluster.broker()
    channels = [f"live-{i}" for i in range(24)]
    # One subscriber in the publishing process, one in another process: both must keep everything.
    local, remote = cluster.client(publisher_broker), cluster.client(subscriber_broker)
    for client in (local, remote):
        for channel in channels:
            client.subscribe(channel)
    collectors = [Collector(local), Collector(remote)]
    blaster = Blaster(cluster.client(publisher_broker), channels)
    blaster.start()
    try:
        wait_until(lambda: blaster.rounds >= 20, timeout=30, message="traffic flowing")
        added = cluster.cli("shards", "add", "s3", spare.url)
        assert added.returncode == 0, added.stderr
        assert "channels that move to another Redis node: 2" in added.stdout  # ~25% for 3 → 4 shards
        for broker in (publisher_broker, subscriber_broker):
            wait_until(lambda b=broker: moves_logged(b), timeout=30, message="move logged")
        rounds = blaster.rounds
        wait_until(lambda: blaster.rounds >= rounds + 20, timeout=30, message="traffic after the add")

        removed = cluster.cli("shards", "remove", "s0")
        assert removed.returncode == 0, removed.stderr
        assert "channels that move to another Redis node:" in removed.stdout
        for broker in (publisher_broker, subscriber_broker):
            wait_until(lambda b=broker: len(moves_logged(b)) >= 2, timeout=30, message="second move")
        rounds = blaster.rounds
        wait_until(lambda: blaster.rounds >= rounds + 20, timeout=30, message="traffic after the removal")
    finally:
        blaster.stop()

    assert blaster.errors == []
    for broker in (publisher_broker, subscriber_broker):
        assert broker.process.poll() is None, broker.output()[-3000:]
        moves = moves_logged(broker)
        assert [names for names, _ in moves] == ["s0, s1, s2, s3", "s1, s2, s3"]
        assert all(count > 0 for _, count in moves), moves  # 24 channels: some always move
    # The ring really moved them: each channel's subscription now sits on its new shard.
    ring = ShardRing(["s1", "s2", "s3"])
    servers = {**cluster.shards, "s3": spare}
    for name in ("s1", "s2", "s3"):
        wait_until(
            lambda n=name: (
                {c.decode() for c in redis.Redis.from_url(servers[n].url).pubsub_channels()}
                >= {channel_key(APP, c) for c in channels if ring.node_for(channel_key(APP, c)) == n}
            ),
            timeout=30,
            message=f"subscriptions on {name}",
        )
    # Every acknowledged message reached both subscribers exactly once, moved channels included.
    for collector in collectors:
        for channel in channels:
            expected = [n for n, _position in blaster.acked[channel]]
            wait_until(
                lambda c=collector, ch=channel, e=expected: len(c.numbers(ch)) >= len(e),
                timeout=30,
                message=f"all messages of {channel}",
            )
            got = collector.numbers(channel)
            assert Counter(got) == Counter(expected), (channel, sorted(set(expected) - set(got)))
        collector.stop()
