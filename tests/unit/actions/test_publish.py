"""``rtm/publish`` (PROTOCOL §5): acknowledged once stored, per-channel permissions, limits."""

from __future__ import annotations

import orjson

from app.models import RepublishRule
from app.protocol import ErrorCode

from .support import APP, Clock, Harness, make_app, messages, role


def authenticated(harness: Harness, **kwargs):
    client = harness.open(**kwargs)
    client.authenticate()
    return client


def stored(harness: Harness, channel: str) -> list:
    found = harness.engine.channels.get(f"{APP}::{channel}")
    return [orjson.loads(m) for _, m in found.entries] if found else []


def test_publish_is_acknowledged_with_the_position_the_engine_stored_it_at():
    harness = Harness()
    client = authenticated(harness)
    reply = client.publish("ch", {"n": 1})
    assert reply["action"] == "rtm/publish/ok" and reply["body"]["channels"] == ["ch"]
    assert (b'{"n":1}', reply["body"]["position"]) == harness.engine.read(f"{APP}::ch")


def test_subscribers_receive_the_published_message():
    harness = Harness()
    publisher, subscriber = authenticated(harness), authenticated(harness)
    subscriber.subscribe("ch")
    publisher.publish("ch", {"n": 1})
    assert messages(subscriber.transport.take()) == [{"n": 1}]


def test_a_channels_list_publishes_to_each_channel_once():
    harness = Harness()
    client = authenticated(harness)
    reply = client.reply("rtm/publish", channels=["a", "b", "a"], channel="ignored", message=1)
    assert reply["body"]["channels"] == ["a", "b"]  # "channels" wins over "channel", duplicates dropped
    assert (stored(harness, "a"), stored(harness, "b"), stored(harness, "ignored")) == ([1], [1], [])
    assert harness.services.stats.publishes == 2


def test_publish_needs_a_message_and_a_channel_of_the_right_shape():
    client = authenticated(Harness())
    assert client.reply("rtm/publish", channel="ch")["body"]["code"] == ErrorCode.EMPTY_MESSAGE
    assert client.reply("rtm/publish", message=1)["body"]["code"] == ErrorCode.MISSING_CHANNEL
    assert client.reply("rtm/publish", channels=[], message=1)["body"]["code"] == ErrorCode.MISSING_CHANNEL
    reply = client.reply("rtm/publish", channels=["a", 3], message=1)
    assert reply["body"]["code"] == ErrorCode.BAD_SCHEMA


def test_every_channel_must_be_allowed_by_the_role_or_nothing_is_published():
    harness = Harness(make_app(roles=(role(channels=("public.*",)),)))
    client = authenticated(harness)
    reply = client.reply("rtm/publish", channels=["public.a", "private"], message=1)
    assert reply["body"]["code"] == ErrorCode.PERMISSION_DENIED and "private" in reply["body"]["error"]
    assert stored(harness, "public.a") == []
    assert client.publish("public.a", 1)["action"] == "rtm/publish/ok"


def test_the_publish_rate_of_the_app_limits_each_connection():
    clock = Clock()
    harness = Harness(make_app(publish_rate=1))
    client = authenticated(harness, bucket_clock=clock)
    codes = [client.publish("ch", n)["action"] for n in range(3)]  # a burst of 2 s worth is allowed
    assert codes == ["rtm/publish/ok", "rtm/publish/ok", "rtm/publish/error"]
    assert authenticated(harness, bucket_clock=clock).publish("ch", 0)["action"] == "rtm/publish/ok"
    clock.advance(1.0)
    assert client.publish("ch", 9)["action"] == "rtm/publish/ok"
    assert stored(harness, "ch") == [0, 1, 0, 9]


def test_the_broker_wide_rate_applies_when_the_app_sets_none():
    client = authenticated(Harness(publish_rate=0.5), bucket_clock=Clock())
    assert client.publish("ch", 1)["action"] == "rtm/publish/ok"
    assert client.publish("ch", 2)["body"]["code"] == ErrorCode.RATE_LIMITED


def test_a_message_over_the_app_size_limit_is_refused():
    harness = Harness(make_app(max_message_size=10))
    client = authenticated(harness)
    assert client.publish("ch", "x" * 20)["body"]["code"] == ErrorCode.MESSAGE_TOO_LARGE
    assert client.publish("ch", "short")["action"] == "rtm/publish/ok"
    assert stored(harness, "ch") == ["short"]


def test_a_publish_the_engine_cannot_store_is_answered_with_its_error():
    harness = Harness()
    client = authenticated(harness)
    harness.engine.available = False
    reply = client.publish("ch", 1)
    assert reply["body"]["code"] == ErrorCode.SHARD_UNAVAILABLE and harness.services.stats.errors == 1


def test_a_republish_rule_publishes_the_projection_to_its_target():
    rule = RepublishRule("select n from `src` where n > 1", "dst")
    harness = Harness(make_app(republish_rules=(rule,)))
    client = authenticated(harness)
    client.publish("src", {"n": 1, "x": 0})
    client.publish("src", {"n": 2, "x": 0})
    assert stored(harness, "dst") == [{"n": 2}]
