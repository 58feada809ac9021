"""The consistent-hash ring and the other sans-I/O parts of sharding: move fractions, CLI parsing, holds."""

from __future__ import annotations

from collections import Counter

import pytest

from app.cli.app_commands import parse_setting
from app.cli.shard_commands import hide_password
from app.engine.republish import AppRules
from app.engine.routes import Hold, Route
from app.models import RepublishRule, Shard, compile_rule
from app.shards import (
    DEFAULT_SHARD,
    ShardRing,
    effective_shards,
    predicted_move_fraction,
    predicted_shard_move_fraction,
)


def keys(n=20000):
    return [f"app{i % 13}::channel-{i}" for i in range(n)]


def test_single_shard_takes_everything():
    ring = ShardRing(["only"])
    assert {ring.node_for(k) for k in keys(100)} == {"only"}


def test_the_same_key_always_maps_to_the_same_shard():
    ring = ShardRing(["a", "b", "c"])
    assert all(ring.node_for(k) == ShardRing(["a", "b", "c"]).node_for(k) for k in keys(500))


def test_keys_spread_over_all_shards():
    ring = ShardRing(["a", "b", "c"])
    counts = Counter(ring.node_for(k) for k in keys())
    assert set(counts) == {"a", "b", "c"}
    assert min(counts.values()) > len(keys()) / 3 * 0.7


def test_adding_a_shard_moves_about_a_quarter_when_going_from_3_to_4():
    fraction = predicted_move_fraction(["a", "b", "c"], ["a", "b", "c", "d"])
    assert 0.15 < fraction < 0.35


def test_moved_keys_only_go_to_the_new_shard():
    before, after = ShardRing(["a", "b", "c"]), ShardRing(["a", "b", "c", "d"])
    assert {after.node_for(k) for k in before.moved_keys(after, keys(5000))} == {"d"}


def test_removing_a_shard_moves_only_its_keys():
    before, after = ShardRing(["a", "b", "c"]), ShardRing(["a", "b"])
    moved = before.moved_keys(after, keys(5000))
    assert {before.node_for(k) for k in moved} == {"c"}


def test_same_list_moves_nothing():
    assert predicted_move_fraction(["a", "b"], ["a", "b"]) == 0.0


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError):
        ShardRing(["a", "a"])


# --- shard lists as stored (empty = the config Redis) -----------------------------------------------------
CONFIG = "redis://config:6379/0"


def shard(name, port):
    return Shard(name, f"redis://node{port}:6379/0")


def test_an_empty_list_means_the_config_redis_alone():
    assert effective_shards((), CONFIG) == (Shard(DEFAULT_SHARD, CONFIG),)


def test_the_first_shard_takes_every_channel_off_the_config_redis():
    assert predicted_shard_move_fraction((), [shard("a", 1)], CONFIG) == 1.0


def test_listing_the_config_redis_itself_as_first_shard_moves_nothing():
    assert predicted_shard_move_fraction((), [Shard("main", CONFIG)], CONFIG) == 0.0


def test_keeping_the_config_redis_next_to_a_new_shard_moves_about_half():
    fraction = predicted_shard_move_fraction((), [Shard(DEFAULT_SHARD, CONFIG), shard("a", 1)], CONFIG)
    assert 0.4 < fraction < 0.6


def test_a_shard_moved_to_another_address_moves_its_channels_only():
    before = [shard("a", 1), shard("b", 2), shard("c", 3)]
    after = [shard("a", 1), shard("b", 2), Shard("c", "redis://elsewhere:6379/0")]
    assert 0.2 < predicted_shard_move_fraction(before, after, CONFIG) < 0.45


def test_removing_the_last_shard_brings_everything_back_to_the_config_redis():
    assert predicted_shard_move_fraction([shard("a", 1)], [], CONFIG) == 1.0
    assert predicted_shard_move_fraction([], [], CONFIG) == 0.0


# --- the CLI's pure helpers ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:s3cret@host:6380/1", "rediss://user:***@host:6380/1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
    ],
)
def test_passwords_are_hidden_in_printed_urls(url, shown):
    assert hide_password(url) == shown


@pytest.mark.parametrize(
    ("pair", "parsed"),
    [
        ("history_max_length=100", ("history_max_length", 100)),
        ("history-max-age=60", ("history_max_age", 60)),
        ("publish_rate=2.5", ("publish_rate", 2.5)),
        ("max_subscriptions=default", ("max_subscriptions", None)),
    ],
)
def test_app_settings_are_parsed(pair, parsed):
    assert parse_setting(pair) == parsed


@pytest.mark.parametrize("pair", ["history_max_length=1.5", "history_max_length=-1", "nope=1", "novalue"])
def test_bad_app_settings_are_refused(pair):
    with pytest.raises(ValueError):
        parse_setting(pair)


# --- republish rules, compiled -----------------------------------------------------------------------------
def test_rules_are_grouped_by_their_from_channel_and_broken_ones_skipped():
    rules = AppRules(
        "app",
        (
            RepublishRule("select a from `src` where a > 1", "t1"),
            RepublishRule("select * from `src`", "t2"),
            RepublishRule("select * from `other`", "t3"),
            RepublishRule("select from", "t4"),
        ),
    )
    assert {c: [t for _, t in v] for c, v in rules.by_channel.items()} == {
        "src": ["t1", "t2"],
        "other": ["t3"],
    }


def test_a_rule_may_not_target_its_own_source():
    with pytest.raises(ValueError, match="itself"):
        compile_rule(RepublishRule("select * from `loop`", "loop"))


# --- holding live messages while a fill reads history ---------------------------------------------------
def test_a_hold_buffers_then_skips_what_the_fill_delivered():
    route = Route(b"app::ch", link=None)  # type: ignore[arg-type]
    hold = route.hold = Hold(source="shard")
    assert route.held(b"5-0 {}") and hold.buffer == [b"5-0 {}"]
    hold.buffer, hold.skip_upto = None, (5, 0)
    assert route.held(b"4-9 {}")  # already delivered by the fill
    assert route.held(b"5-0 {}")
    assert not route.held(b"5-1 {}")  # newer: delivered, and the hold is done
    assert route.hold is None


def test_after_a_move_the_fill_starts_a_little_before_the_newest_position_seen():
    route = Route(b"app::ch", link=None)  # type: ignore[arg-type]
    route.created_ms = 1_000
    route.last_position = "1700000000000-7"
    assert route.move_floor() == "1699999998000-0"
    route.last_position = "0-0"
    assert route.move_floor() == "0-0"
