"""One shard of three fails: the others keep working, the failed one's clients are told, and everything
comes back by itself — readers reconnect, resubscribe and catch up from history."""

from __future__ import annotations

import signal
from dataclasses import replace

import pytest
import redis

from app.client import CobraError
from app.models import RepublishRule
from tests.support.processes import wait_until
from tests.support.sharded import APP, Blaster, Collector, ShardedCluster, data_messages


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    deployment = ShardedCluster(tmp_path_factory.mktemp("failure")).start(history_max_length=10_000)
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module")
def brokers(cluster):
    # A short probe makes a frozen shard noticed within a few seconds instead of ~15.
    env = {"COBRA_SHARD_PROBE_INTERVAL": "0.5"}
    return cluster.broker(env), cluster.broker(env)


def publish_code(client, channel: str, message: object) -> str | None:
    """None when the publish was acknowledged, else its error code."""
    try:
        client.publish(channel, message)
        return None
    except CobraError as exc:
        return exc.code


def test_a_killed_shard_fails_only_its_channels_and_comes_back_by_itself(cluster, brokers):
    dead = cluster.channels_on("s1", 2, prefix="dead")
    alive = [cluster.channels_on(name, 1, prefix="alive")[0] for name in ("s0", "s2")]
    # A republish rule from the dead shard to a live one: a publish that failed is not republished.
    cluster.store.update_app(
        APP,
        lambda app: replace(
            app,
            settings=replace(
                app.settings,
                republish_rules=(RepublishRule(expression=f"select n from `{dead[0]}`", target=alive[1]),),
            ),
        ),
    )
    publisher = cluster.client(brokers[0], timeout=30)
    local, remote = cluster.client(brokers[0], timeout=30), cluster.client(brokers[1], timeout=30)
    for channel in alive:
        local.subscribe(channel)

    def rule_loaded() -> bool:
        publisher.publish(dead[0], {"n": 0})
        try:
            return bool(data_messages(local, 1, timeout=0.5))
        except TimeoutError:
            return False

    wait_until(rule_loaded, timeout=20, message="rule loaded")
    local.subscribe(dead[0])
    remote.subscribe(dead[0])
    collectors = [Collector(local), Collector(remote)]

    def republished() -> list[dict]:
        return [m for _, m in collectors[0].of(alive[1]) if "n" in m]

    assert publish_code(publisher, dead[0], {"n": 1}) is None
    acked = [1]
    for collector in collectors:
        wait_until(lambda c=collector: c.numbers(dead[0]) == [1], message="first message")
    wait_until(lambda: republished()[-1:] == [{"n": 1}], message="republished")
    baseline = len(republished())

    server = cluster.shards["s1"]
    server.stop(kill=True)
    try:
        for collector in collectors:  # its subscribers are told, once
            wait_until(lambda c=collector: "shard_unavailable" in c.error_codes(), timeout=30, message="told")
            [error] = collector.errors
            assert error["action"] == "rtm/subscription/error"
            assert error["body"]["subscription_id"] == dead[0]
        wait_until(lambda: publish_code(publisher, dead[0], {"n": -1}) == "shard_unavailable", timeout=30)
        for n, channel in enumerate(alive, 1):  # the other shards carry on
            assert publisher.publish(channel, {"alive": n})["channels"] == [channel]
        wait_until(lambda: len(collectors[0].of(alive[0])) == 1, message="alive channel delivered")
        reply = publisher.request("rtm/subscribe", {"channel": dead[1]}, check=False)
        assert (reply["action"], reply["body"]["code"]) == ("rtm/subscribe/error", "shard_unavailable")
        assert "error" in reply["body"]
    finally:
        server.start()  # same port, same data directory

    n = 1

    def publish_next() -> bool:
        nonlocal n
        n += 1
        if publish_code(publisher, dead[0], {"n": n}) is None:
            acked.append(n)
        return len(acked) >= 21  # keep going until 20 publishes made it after the restart

    wait_until(publish_next, timeout=60, interval=0.01, message="publishing again")  # n from 2 on
    # No resubscribe by the client: both subscribers get everything acknowledged, exactly once, in order.
    for collector in collectors:
        wait_until(lambda c=collector: len(c.numbers(dead[0])) >= len(acked), timeout=30, message="caught up")
        assert collector.numbers(dead[0]) == acked
        assert collector.error_codes() == ["shard_unavailable"]
    # Republished only what was acknowledged on the source.
    after = acked[1:]
    wait_until(lambda: len(republished()) >= baseline + len(after), timeout=30, message="republished")
    assert [m["n"] for m in republished()[baseline:]] == after
    for collector in collectors:
        collector.stop()
    for broker in brokers:
        assert broker.process.poll() is None


def test_a_dropped_pubsub_connection_is_caught_up_from_history(cluster, brokers):
    channel = cluster.channels_on("s2", 1, prefix="dropped")[0]
    subscribers = [cluster.client(broker) for broker in brokers]
    for client in subscribers:
        client.subscribe(channel)
    collectors = [Collector(client) for client in subscribers]
    blaster = Blaster(cluster.client(brokers[0]), [channel], limit=1500)
    blaster.start()
    shard = redis.Redis.from_url(cluster.shards["s2"].url)
    for after in (300, 800):
        wait_until(lambda a=after: blaster.rounds >= a, timeout=60, message=f"{after} published")
        # Redis drops the brokers' Pub/Sub connections but stays up: publishing goes on meanwhile.
        assert shard.client_kill_filter(_type="pubsub") >= len(brokers)
    blaster.join(120)
    assert blaster.errors == []
    expected = [n for n, _position in blaster.acked[channel]]
    for collector in collectors:
        wait_until(lambda c=collector: len(c.numbers(channel)) >= len(expected), timeout=60, message="all")
        assert collector.numbers(channel) == expected
        assert set(collector.error_codes()) <= {"shard_unavailable"}
        collector.stop()


@pytest.mark.slow
def test_a_frozen_shard_is_detected_by_the_probe_and_recovers(cluster, brokers):
    """SIGSTOP keeps the TCP connections open and silent: only the probe and the reply timeout notice."""
    channel = cluster.channels_on("s0", 1, prefix="frozen")[0]
    client = cluster.client(brokers[0], timeout=60)
    subscriber = cluster.client(brokers[1], timeout=60)
    subscriber.subscribe(channel)
    collector = Collector(subscriber)
    assert publish_code(client, channel, {"n": 1}) is None
    server = cluster.shards["s0"]
    server.process.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: "shard_unavailable" in collector.error_codes(), timeout=60, message="noticed")
        assert publish_code(client, channel, {"n": 2}) == "shard_unavailable"
    finally:
        server.process.send_signal(signal.SIGCONT)
    wait_until(lambda: publish_code(client, channel, {"n": 3}) is None, timeout=60, message="back")
    wait_until(lambda: 3 in collector.numbers(channel), timeout=30, message="delivered again")
    assert collector.numbers(channel)[0] == 1 and collector.numbers(channel)[-1] == 3
    collector.stop()
