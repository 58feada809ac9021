"""Republish rules: messages of a busy channel that match a StreamSQL expression are also published,
projected, to a target channel of the same app — across shards, without loops, managed from the CLI."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from app.client import CobraClient
from app.models import RepublishRule
from tests.support.processes import can_authenticate, wait_until
from tests.support.sharded import SECRET, ShardedCluster, data_messages, make_app


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    deployment = ShardedCluster(tmp_path_factory.mktemp("republish")).start()
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module")
def brokers(cluster):
    return cluster.broker(), cluster.broker()


@pytest.fixture
def app_key(cluster, brokers):
    """A fresh app, known to both brokers, so each test's rules start from none."""
    key = f"rep-{uuid.uuid4().hex[:8]}"
    cluster.store.put_app(make_app(key))
    for broker in brokers:
        wait_until(
            lambda b=broker: can_authenticate(b, key, "pubsub", SECRET), timeout=20, message="app known"
        )
    yield key
    cluster.store.delete_app(key)


def client_of(cluster, broker, key: str) -> CobraClient:
    client = CobraClient(broker.endpoint, key, "pubsub", SECRET)
    cluster.clients.append(client)
    return client


def on_other_shards(cluster, key: str, count: int, prefix: str) -> list[str]:
    """``count`` channel names of app ``key`` that all hash to different shards."""
    names, shards, i = [], set(), 0
    while len(names) < count:
        name, i = f"{prefix}{i}", i + 1
        shard = cluster.shard_name_for(name, key)
        if shard not in shards:
            names.append(name)
            shards.add(shard)
    return names


def add_rule(cluster, key: str, expression: str, target: str) -> None:
    result = cluster.cli("apps", "republish", key, "add", expression, target)
    assert result.returncode == 0, result.stderr


def wait_for_rule(publisher: CobraClient, target_reader: CobraClient, source: str, probe: dict) -> None:
    """Publish ``probe`` to ``source`` until the brokers have loaded the rule and it reaches the target."""

    def arrived() -> bool:
        publisher.publish(source, probe)
        try:
            return bool(data_messages(target_reader, 1, timeout=0.5))
        except TimeoutError:
            return False

    wait_until(arrived, timeout=20, message="rule loaded")
    while True:  # drain the extra probes
        try:
            data_messages(target_reader, 1, timeout=0.5)
        except TimeoutError:
            return


def test_matching_messages_are_republished_projected_to_the_target(cluster, brokers, app_key):
    source, target = on_other_shards(cluster, app_key, 2, "fps")
    add_rule(
        cluster,
        app_key,
        f"select device.model as model, data.fps as fps from `{source}` where data.fps < 30",
        target,
    )
    publisher = client_of(cluster, brokers[0], app_key)
    target_reader = client_of(cluster, brokers[1], app_key)
    target_reader.subscribe(target)
    wait_for_rule(publisher, target_reader, source, {"device": {"model": "probe"}, "data": {"fps": 1}})
    source_reader = client_of(cluster, brokers[1], app_key)
    source_reader.subscribe(source)

    frames = [("pixel", 24), ("iphone", 60), ("galaxy", 12.5), ("pixel", 30)]
    for model, fps in frames:
        publisher.publish(source, {"device": {"model": model}, "data": {"fps": fps}})
    assert [m["message"]["data"]["fps"] for m in data_messages(source_reader, 4)] == [24, 60, 12.5, 30]
    republished = data_messages(target_reader, 2)
    assert [m["message"] for m in republished] == [
        {"model": "pixel", "fps": 24},
        {"model": "galaxy", "fps": 12.5},
    ]
    # The target is a channel like any other: with history and a value of its own, on its own shard.
    assert target_reader.read(target)["message"] == {"model": "galaxy", "fps": 12.5}
    assert cluster.redis_for(target, app_key).xlen(f"{app_key}::{target}") >= 2
    assert cluster.shard_name_for(target, app_key) != cluster.shard_name_for(source, app_key)


def test_republished_messages_do_not_trigger_rules_again(cluster, brokers, app_key):
    first, second, third = on_other_shards(cluster, app_key, 3, "chain")
    add_rule(cluster, app_key, f"select * from `{first}`", second)
    add_rule(cluster, app_key, f"select * from `{second}`", third)
    publisher = client_of(cluster, brokers[0], app_key)
    reader = client_of(cluster, brokers[0], app_key)
    reader.subscribe(second)
    wait_for_rule(publisher, reader, first, {"probe": 1})
    reader.subscribe(third)

    publisher.publish(first, {"from": "first"})
    publisher.publish(second, {"from": "second"})
    # Everything for third goes through one shard's queue in order: a chained copy of the message
    # published to first would arrive before this sentinel.
    publisher.publish(third, {"sentinel": True})
    got = data_messages(reader, 4)
    # Per channel, in order (two shards' pushes may interleave either way).
    assert [m["message"] for m in got if m["sub"] == second] == [{"from": "first"}, {"from": "second"}]
    # Only the message published to second itself went on to third: republished ones never chain.
    assert [m["message"] for m in got if m["sub"] == third] == [{"from": "second"}, {"sentinel": True}]


def test_a_batch_stays_a_batch_and_only_matching_elements_go(cluster, brokers, app_key):
    source, target = on_other_shards(cluster, app_key, 2, "batch")
    add_rule(cluster, app_key, f"select x from `{source}` where x > 2", target)
    publisher = client_of(cluster, brokers[1], app_key)
    reader = client_of(cluster, brokers[0], app_key)
    reader.subscribe(target)
    wait_for_rule(publisher, reader, source, {"x": 100})
    publisher.publish(source, {"messages": [{"x": 1}, {"x": 5}, {"x": 9, "y": 0}]})
    publisher.publish(source, {"messages": [{"x": 0}]})  # nothing matches: nothing republished
    publisher.publish(source, {"x": 3})
    got = data_messages(reader, 2)
    assert [m["message"] for m in got] == [{"messages": [{"x": 5}, {"x": 9}]}, {"x": 3}]


def test_rules_apply_to_each_channel_of_a_multi_channel_publish(cluster, brokers, app_key):
    source, other, target = on_other_shards(cluster, app_key, 3, "multi")
    add_rule(cluster, app_key, f"select n from `{source}`", target)
    publisher = client_of(cluster, brokers[0], app_key)
    reader = client_of(cluster, brokers[1], app_key)
    reader.subscribe(target)
    wait_for_rule(publisher, reader, source, {"n": -1})
    publisher.request("rtm/publish", {"channels": [other, source], "message": {"n": 7, "extra": True}})
    assert [m["message"] for m in data_messages(reader, 1)] == [{"n": 7}]


def test_rules_are_listed_removed_and_removal_takes_effect(cluster, brokers, app_key):
    source, target = on_other_shards(cluster, app_key, 2, "rm")
    add_rule(cluster, app_key, f"select * from `{source}` where keep = true", target)
    listing = cluster.cli("apps", "republish", app_key, "list")
    assert listing.stdout.strip() == f"1. select * from `{source}` where keep = true  ->  {target}"
    publisher = client_of(cluster, brokers[0], app_key)
    reader = client_of(cluster, brokers[0], app_key)
    reader.subscribe(target)
    wait_for_rule(publisher, reader, source, {"keep": True})

    assert cluster.cli("apps", "republish", app_key, "remove", "1").returncode == 0
    assert "has no republish rules" in cluster.cli("apps", "republish", app_key, "list").stdout

    def rule_gone() -> bool:
        # A publish to the source, then a sentinel straight to the target: once the rule is gone,
        # the sentinel is the first thing the target sees.
        publisher.publish(source, {"keep": True, "sentinel": False})
        publisher.publish(target, {"sentinel": True})
        first = data_messages(reader, 1)[0]["message"]
        if first.get("sentinel") is False:
            data_messages(reader, 1)  # and its sentinel
        return first == {"sentinel": True}

    wait_until(rule_gone, timeout=20, message="rule removed")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["add", "select * from", "t"], "invalid StreamSQL expression"),
        (["add", "select * from `a` where", "t"], "invalid StreamSQL expression"),
        (["add", "select * from `a`", "a"], "cannot republish 'a' to itself"),
        (["remove", "1"], "no rule 1"),
    ],
)
def test_the_republish_cli_refuses_bad_rules_with_a_clear_error(cluster, app_key, args, error):
    result = cluster.cli("apps", "republish", app_key, *args)
    assert result.returncode == 1
    assert error in result.stderr
    assert cluster.store.get_app(app_key).settings.republish_rules == ()


def test_a_broken_rule_written_into_the_store_is_ignored_and_publishing_goes_on(cluster, brokers, app_key):
    source, target = on_other_shards(cluster, app_key, 2, "broken")
    good = RepublishRule(expression=f"select * from `{source}`", target=target)
    bad = RepublishRule(expression="select from where", target=target)
    cluster.store.update_app(
        app_key, lambda app: replace(app, settings=replace(app.settings, republish_rules=(bad, good)))
    )
    publisher = client_of(cluster, brokers[1], app_key)
    reader = client_of(cluster, brokers[1], app_key)
    reader.subscribe(target)
    wait_for_rule(publisher, reader, source, {"probe": 1})
    assert publisher.publish(source, {"ok": 1})["channels"] == [source]
    assert data_messages(reader, 1)[0]["message"] == {"ok": 1}
    assert "ignoring republish rule 'select from where'" in brokers[1].output()
