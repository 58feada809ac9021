"""Redis Cluster slot arithmetic, slot maps, redirections and command keys (app.engine.cluster_slots)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot as reference_key_slot

from app.engine.cluster_pubsub import sharded_commands
from app.engine.cluster_slots import (
    SLOTS,
    command_key,
    crc16,
    hash_tag,
    key_slot,
    parse_cluster_slots,
    parse_redirect,
)
from app.engine.history import HistoryPolicy, publish_command
from app.resp import encode_command


def test_crc16_is_xmodem_as_the_cluster_specification_says() -> None:
    # The specification's check value: CRC16-XMODEM of "123456789" is 0x31C3.
    assert crc16(b"123456789") == 0x31C3
    assert crc16(b"") == 0


@pytest.mark.parametrize(
    "key",
    [
        b"foo",
        b"app::chat",
        b"app::{room}",
        b"{user1000}.following",
        b"foo{}{bar}",
        b"foo{{bar}}zap",
        b"\xff\x00",
    ],
)
def test_key_slot_matches_redis_py(key: bytes) -> None:
    assert key_slot(key) == reference_key_slot(key)


def test_key_slot_matches_redis_py_on_many_channel_keys() -> None:
    keys = [f"app{i % 7}::channel-{i}".encode() for i in range(5000)]
    assert [key_slot(k) for k in keys] == [reference_key_slot(k) for k in keys]
    assert len({key_slot(k) for k in keys}) > 2000  # they spread


def test_hash_tag_rules() -> None:
    assert hash_tag(b"{user1000}.following") == b"user1000"
    assert hash_tag(b"foo{}{bar}") == b"foo{}{bar}"  # an empty first tag: the whole key
    assert hash_tag(b"foo{{bar}}zap") == b"{bar"
    assert hash_tag(b"foo{bar") == b"foo{bar"


def test_a_channels_stream_and_pubsub_channel_share_a_slot() -> None:
    # The publish script XADDs to KEYS[1] and SPUBLISHes on KEYS[1]: one string, so one slot.
    command = publish_command(b"0" * 40, b"app::{odd}name", b"{}", HistoryPolicy(10, 0))
    assert command_key(command) == b"app::{odd}name"
    assert key_slot(command_key(command)) == reference_key_slot(b"app::{odd}name")


def test_command_key_of_ordinary_commands() -> None:
    assert command_key(encode_command("XADD", "app::c", "*", "m", "1")) == b"app::c"
    assert command_key(encode_command("EVALSHA", "x" * 40, 0)) is None
    assert command_key(encode_command("PING")) is None


def test_parse_cluster_slots_reply() -> None:
    reply = [
        [
            0,
            5460,
            [b"127.0.0.1", 7000, b"id-a"],
            [b"127.0.0.1", 7003, b"id-d"],
            [b"127.0.0.1", 7004, b"id-e"],
        ],
        [5461, 10922, [b"", 7001, b"id-b"]],
        [10923, 16383, [b"127.0.0.1", 7002, b"id-c"]],
    ]
    slot_map = parse_cluster_slots(reply, "10.9.9.9")
    assert slot_map.owner(0) == ("127.0.0.1", 7000)
    assert slot_map.owner(5461) == ("10.9.9.9", 7001)  # empty host: where the reply came from
    assert slot_map.owner(SLOTS - 1) == ("127.0.0.1", 7002)
    assert slot_map.covered
    assert slot_map.masters[("127.0.0.1", 7000)].replicas == (("127.0.0.1", 7003), ("127.0.0.1", 7004))
    assert slot_map.slot_ranges(("127.0.0.1", 7000)) == [(0, 5460)]


def test_an_uncovered_slot_map_says_so_and_a_moved_patches_it() -> None:
    slot_map = parse_cluster_slots([[0, 100, [b"127.0.0.1", 7000, b"a"]]], "127.0.0.1")
    assert not slot_map.covered
    slot_map.move(50, ("127.0.0.1", 7009))
    assert slot_map.owner(50) == ("127.0.0.1", 7009)
    assert slot_map.slot_ranges(("127.0.0.1", 7000)) == [(0, 49), (51, 100)]


def test_parse_redirect() -> None:
    moved = parse_redirect("MOVED 3999 127.0.0.1:6381")
    assert moved is not None and not moved.ask and moved.slot == 3999 and moved.address == ("127.0.0.1", 6381)
    ask = parse_redirect("ASK 12 [::1]:7000")
    assert ask is not None and ask.ask and ask.address == ("::1", 7000)
    assert parse_redirect("CLUSTERDOWN The cluster is down") is None
    assert parse_redirect("NOSCRIPT No matching script") is None


def test_sharded_subscribes_are_one_command_per_slot() -> None:
    # SSUBSCRIBE of channels in two slots is refused with CROSSSLOT: one command per slot.
    a1, a2, b = b"{a}one", b"{a}two", b"{b}one"
    data = sharded_commands([b], [a1, a2, b])
    assert data == (
        encode_command(b"SUNSUBSCRIBE", b)
        + encode_command(b"SSUBSCRIBE", a1, a2)
        + encode_command(b"SSUBSCRIBE", b)
    )


@pytest.mark.parametrize("length", [1, 9, 10, 99, 100, 1000])
def test_command_key_of_a_publish_of_any_key_length(length: int) -> None:
    key = b"k" * length
    command = publish_command(b"f" * 40, key, b'{"n": 1}', HistoryPolicy(0, 60), deliver=False)
    assert command_key(command) == key


@pytest.mark.parametrize(
    ("key", "hashed"),
    [
        (b"{}", b"{}"),  # an empty tag alone: the whole key
        (b"{}x", b"{}x"),
        (b"a{b}c{d}", b"b"),  # the first tag only
        (b"a}b{c}", b"c"),  # a "}" before the first "{" does not count
        (b"{{a}}", b"{a"),  # nested: from the first "{" to the first "}" after it
        (b"a{b{c}d}", b"b{c"),
        (b"a{}b{c}", b"a{}b{c}"),  # the first "{" has an empty tag: no tag at all, not "c"
        (b"a{b", b"a{b"),  # no closing brace
        (b"a}", b"a}"),
    ],
)
def test_hash_tag_first_brace_rule(key: bytes, hashed: bytes) -> None:
    assert hash_tag(key) == hashed
    assert key_slot(key) == reference_key_slot(key)


def test_a_channel_with_braces_keeps_its_readable_key_and_takes_its_tags_slot() -> None:
    from app.channels import channel_key

    # The key is <appkey>::<channel>, braces and all: no tag is added, so operators find it by name.
    assert channel_key("app", "{room}.chat") == "app::{room}.chat"
    assert key_slot(b"app::{room}.chat") == key_slot(b"room") == key_slot(b"other::{room}")
    # Without braces the whole key is hashed, app key included.
    assert key_slot(b"app::chat") == reference_key_slot(b"app::chat")
    assert key_slot(channel_key("app", "{}").encode()) == reference_key_slot(b"app::{}")


def test_a_redirect_with_a_hostname_or_a_bad_port_is_parsed_or_ignored() -> None:
    moved = parse_redirect("MOVED 16383 redis-node-3.internal:6379")
    assert moved is not None and moved.slot == 16383 and moved.address == ("redis-node-3.internal", 6379)
    assert parse_redirect("MOVED") is None
    assert parse_redirect("ASK notaslot 127.0.0.1:7000") is None
