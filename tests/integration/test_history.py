"""History and positions over three shards (PROTOCOL §5 and §7): real positions in replies, resume with no
gap and no duplicate under concurrent publishing, exact reads, expired positions, expiry, history off."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from app.channels import channel_key
from app.client import CobraClient
from app.positions import parse_position
from tests.support.processes import can_authenticate, wait_until
from tests.support.sharded import (
    APP,
    SECRET,
    Blaster,
    Collector,
    ShardedCluster,
    data_messages,
    make_app,
    next_push_of,
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    deployment = ShardedCluster(tmp_path_factory.mktemp("history")).start(history_max_length=10_000)
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module")
def brokers(cluster):
    return cluster.broker(), cluster.broker()


@pytest.fixture
def new_app(cluster, brokers):
    """``new_app(**settings)`` → the key of a fresh app with those settings, known to both brokers."""

    def create(**settings: object) -> str:
        key = f"hist-{uuid.uuid4().hex[:8]}"
        cluster.store.put_app(make_app(key, **settings))
        for broker in brokers:
            wait_until(
                lambda b=broker: can_authenticate(b, key, "pubsub", SECRET),
                timeout=20,
                message=f"app {key} known",
            )
        return key

    return create


def position(text: str) -> tuple[int, int]:
    parsed = parse_position(text)
    assert parsed is not None, text
    return parsed


# --------------------------------------------------------------------------- positions in replies
def test_publish_subscribe_and_unsubscribe_replies_carry_real_positions(cluster, brokers):
    client = cluster.client(brokers[0])
    channel = f"pos-{uuid.uuid4().hex[:6]}"
    assert client.subscribe(channel)["position"] == "0-0"  # nothing published yet
    published = [client.publish(channel, {"n": n})["position"] for n in range(3)]
    assert [position(p) for p in published] == sorted(position(p) for p in published)
    assert len(set(published)) == 3
    pushed = data_messages(client, 3)
    assert [m["position"] for m in pushed] == published
    # The positions are the stream ids on the channel's shard.
    stream = cluster.redis_for(channel).xrange(channel_key(APP, channel))
    assert [entry_id.decode() for entry_id, _ in stream] == published
    other = cluster.client(brokers[1])
    assert other.subscribe(channel)["position"] == published[-1]  # the channel's tail
    assert client.unsubscribe(channel)["position"] == published[-1]  # the last one delivered


def test_read_with_a_position_returns_that_exact_entry(cluster, brokers):
    client = cluster.client(brokers[0])
    channel = f"read-{uuid.uuid4().hex[:6]}"
    positions = [client.publish(channel, {"n": n})["position"] for n in range(5)]
    for n, at in enumerate(positions):
        assert client.read(channel, at) == {"message": {"n": n}, "position": at}
    assert client.read(channel)["message"] == {"n": 4}
    assert client.read(channel, "1-0")["message"] is None


# --------------------------------------------------------------------------- resume: no gap, no duplicate
def test_resume_during_concurrent_publishing_has_no_gap_and_no_duplicate(cluster, brokers):
    total = 1500
    channels = [c for name in cluster.shards for c in cluster.channels_on(name, 1, prefix="resume")]
    blaster = Blaster(cluster.client(brokers[0]), channels, limit=total)
    resumes: list[tuple[str, str, int, Collector]] = []  # (channel, position, messages before it, reader)

    def resume(channel: str, at_position: str, before: int, broker_index: int) -> None:
        client = cluster.client(brokers[broker_index], timeout=30)
        client.subscribe(channel, position=at_position)
        resumes.append((channel, at_position, before, Collector(client)))

    blaster.start()
    try:
        for turn, after in enumerate((40, 250, 600, 1000)):
            wait_until(lambda a=after: blaster.rounds >= a, timeout=60, message=f"{after} published")
            for channel in channels:
                n, at = blaster.acked[channel][after - 30 - 1]  # resume a little behind the head
                resume(channel, at, n, turn % 2)
            resume(channels[turn % len(channels)], "0-0", 0, (turn + 1) % 2)
    finally:
        blaster.join(120)
    assert blaster.errors == []
    for channel, at_position, before, collector in resumes:
        expected = list(range(before + 1, total + 1))
        wait_until(
            lambda c=collector, ch=channel, e=expected: len(c.numbers(ch)) >= len(e),
            timeout=60,
            message=f"{channel} resumed after {at_position}",
        )
        assert collector.numbers(channel) == expected, f"{channel} after {at_position}"
        assert collector.error_codes() == []
        collector.stop()


def test_a_live_subscriber_without_position_gets_a_contiguous_tail(cluster, brokers):
    channel = cluster.channels_on("s2", 1, prefix="tail")[0]
    blaster = Blaster(cluster.client(brokers[0]), [channel], limit=400)
    blaster.start()
    wait_until(lambda: blaster.rounds >= 50, timeout=30, message="traffic")
    client = cluster.client(brokers[1])
    client.subscribe(channel)
    collector = Collector(client)
    blaster.join(60)
    wait_until(lambda: collector.numbers(channel)[-1:] == [400], timeout=30, message="last message")
    got = collector.numbers(channel)
    assert got == list(range(got[0], 401))
    collector.stop()


# --------------------------------------------------------------------------- retention
def test_an_expired_position_gets_expired_position_then_the_oldest_retained(cluster, brokers, new_app):
    key = new_app(history_max_length=5)
    client = CobraClient(brokers[0].endpoint, key, "pubsub", SECRET)
    channel = "short"
    positions = [client.publish(channel, {"n": n})["position"] for n in range(1, 13)]
    client.request("rtm/subscribe", {"channel": channel, "position": positions[1]})
    error = next_push_of(client, "rtm/subscription/error")
    assert error["body"]["code"] == "expired_position"
    assert error["body"]["subscription_id"] == channel
    assert error["body"]["position"] == positions[7]  # message 8, the oldest of the 5 kept
    assert [m["message"]["n"] for m in data_messages(client, 5)] == [8, 9, 10, 11, 12]
    client.publish(channel, {"n": 13})
    assert data_messages(client, 1)[0]["message"] == {"n": 13}
    client.close()


def test_a_position_beyond_the_tail_is_reported_as_expired(cluster, brokers):
    client = cluster.client(brokers[1])
    channel = f"beyond-{uuid.uuid4().hex[:6]}"
    tail = client.publish(channel, {"n": 1})["position"]
    client.request("rtm/subscribe", {"channel": channel, "position": "99999999999999-0"})
    error = next_push_of(client, "rtm/subscription/error")
    assert (error["body"]["code"], error["body"]["position"]) == ("expired_position", tail)


def test_history_max_age_trims_old_messages_and_expires_idle_channels(cluster, brokers, new_app):
    key = new_app(history_max_length=100)
    result = cluster.cli("apps", "set", key, "history_max_age=1")
    assert result.returncode == 0, result.stderr
    assert "history_max_age = 1" in result.stdout
    client = CobraClient(brokers[0].endpoint, key, "pubsub", SECRET)
    channel = "aging"
    shard = cluster.redis_for(channel, key)
    stream = channel_key(key, channel)

    def policy_applied() -> bool:  # the brokers reload the app's settings within a second or so
        client.publish(channel, {"n": 0})
        return 0 < shard.pttl(stream) <= 1000

    wait_until(policy_applied, timeout=20, message="max age applied")
    client.publish(channel, {"n": "old"})
    time.sleep(1.2)  # let "old" pass the max age; the next publish trims it
    client.publish(channel, {"n": "new"})
    assert [fields[b"m"] for _id, fields in shard.xrange(stream)] == [b'{"n":"new"}']
    # Idle: the whole channel disappears after the max age (PEXPIRE), so Redis does not fill up.
    wait_until(lambda: not shard.exists(stream), timeout=20, message="idle channel expired")
    client.close()


def test_history_off_is_pure_pubsub_but_positions_still_increase(cluster, brokers, new_app):
    key = new_app(history_max_length=0)
    client = CobraClient(brokers[0].endpoint, key, "pubsub", SECRET)
    channel = "nohistory"
    positions = [client.publish(channel, {"n": n})["position"] for n in range(1, 4)]
    assert [position(p) for p in positions] == sorted({position(p) for p in positions})
    shard = cluster.redis_for(channel, key)
    assert shard.xlen(channel_key(key, channel)) == 1  # only the newest, for rtm/read
    assert client.read(channel)["message"] == {"n": 3}
    # "0-0" replays nothing: the first thing delivered is the next live message.
    client.subscribe(channel, position="0-0", subscription_id="from-start")
    # A resume from an older position cannot be served: expired_position, then live.
    client.request("rtm/subscribe", {"channel": channel, "subscription_id": "old", "position": positions[0]})
    error = next_push_of(client, "rtm/subscription/error")
    assert (error["body"]["subscription_id"], error["body"]["code"]) == ("old", "expired_position")
    fourth = client.publish(channel, {"n": 4})["position"]
    assert position(fourth) > position(positions[-1])
    got = data_messages(client, 2)
    assert sorted((m["sub"], m["message"]["n"]) for m in got) == [("from-start", 4), ("old", 4)]
    client.close()


def test_apps_set_validates_and_fails_clearly(cluster, new_app):
    key = new_app()
    for args, error in [
        (["history_max_length=-1"], "must not be negative"),
        (["history_max_length=ten"], "must be an integer"),
        (["colour=blue"], "unknown setting 'colour'"),
        (["history_max_length"], "expected key=value"),
    ]:
        result = cluster.cli("apps", "set", key, *args)
        assert (result.returncode, error in result.stderr) == (1, True), result.stderr
    assert "no app 'missing-app'" in cluster.cli("apps", "set", "missing-app", "history_max_age=5").stderr
    ok = cluster.cli("apps", "set", key, "history_max_length=7", "publish_rate=2.5", "max_subscriptions=9")
    assert ok.returncode == 0, ok.stderr
    settings = cluster.store.get_app(key).settings
    assert (settings.history_max_length, settings.publish_rate, settings.max_subscriptions) == (7, 2.5, 9)
    assert cluster.cli("apps", "set", key, "publish_rate=default").returncode == 0
    assert cluster.store.get_app(key).settings.publish_rate is None


def test_concurrent_resumes_on_one_connection_each_get_their_own_exact_suffix(cluster, brokers):
    """Many subscriptions of one connection resuming from different positions of one busy channel."""
    channel = cluster.channels_on("s0", 1, prefix="multi")[0]
    blaster = Blaster(cluster.client(brokers[1]), [channel], limit=600)
    blaster.start()
    wait_until(lambda: blaster.rounds >= 300, timeout=60, message="traffic")
    client = cluster.client(brokers[0], timeout=30)
    starts = [10, 100, 200, 290]
    for start in starts:
        n, at = blaster.acked[channel][start - 1]
        client.subscribe(channel, position=at, subscription_id=f"from-{n}")
    collector = Collector(client)
    blaster.join(60)
    for start in starts:
        expected = list(range(start + 1, 601))
        wait_until(
            lambda s=start, e=expected: len(collector.numbers(f"from-{s}")) >= len(e),
            timeout=60,
            message=f"resume from {start}",
        )
        assert collector.numbers(f"from-{start}") == expected
    collector.stop()


def test_the_stream_lives_on_the_channel_shard_only(cluster, brokers):
    client = cluster.client(brokers[0])
    channel = cluster.channels_on("s1", 1, prefix="where")[0]
    client.publish(channel, {"n": 1})
    holders = [
        name
        for name, server in cluster.shards.items()
        if redis.Redis.from_url(server.url).exists(channel_key(APP, channel))
    ]
    assert holders == ["s1"]
