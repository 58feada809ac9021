"""``rtm/write``, ``rtm/read``, ``rtm/delete`` (PROTOCOL §5): a channel's newest message as a value."""

from __future__ import annotations

from app.protocol import ErrorCode

from .support import Harness, make_app, role


def authenticated(harness: Harness | None = None):
    client = (harness or Harness()).open()
    client.authenticate()
    return client


def test_write_answers_the_position_and_read_returns_the_newest_value():
    client = authenticated()
    first = client.reply("rtm/write", channel="k", message={"v": 1})["body"]["stream"]
    second = client.reply("rtm/write", channel="k", message={"v": 2})["body"]["stream"]
    assert client.reply("rtm/read", channel="k")["body"] == {"message": {"v": 2}, "position": second}
    assert client.reply("rtm/read", channel="k", position=first)["body"] == {
        "message": {"v": 1},
        "position": first,
    }


def test_reading_a_channel_never_written_answers_null():
    client = authenticated()
    assert client.reply("rtm/read", channel="k")["body"] == {"message": None, "position": None}


def test_read_refuses_a_malformed_position():
    client = authenticated()
    assert client.reply("rtm/read", channel="k", position="x")["body"]["code"] == ErrorCode.INVALID_POSITION


def test_delete_removes_the_value():
    client = authenticated()
    client.reply("rtm/write", channel="k", message=1)
    assert client.reply("rtm/delete", channel="k")["action"] == "rtm/delete/ok"
    assert client.reply("rtm/read", channel="k")["body"]["message"] is None


def test_each_needs_a_channel_and_write_a_message():
    client = authenticated()
    for action in ("rtm/write", "rtm/read", "rtm/delete"):
        assert client.reply(action, message=1)["body"]["code"] == ErrorCode.MISSING_CHANNEL, action
    assert client.reply("rtm/write", channel="k")["body"]["code"] == ErrorCode.EMPTY_MESSAGE


def test_each_needs_the_channel_allowed_by_the_role():
    client = authenticated(Harness(make_app(roles=(role(channels=("mine.*",)),))))
    for action in ("rtm/write", "rtm/read", "rtm/delete"):
        reply = client.reply(action, channel="theirs", message=1)
        assert reply["body"]["code"] == ErrorCode.PERMISSION_DENIED, action


def test_write_respects_the_app_message_size_limit():
    client = authenticated(Harness(make_app(max_message_size=8)))
    reply = client.reply("rtm/write", channel="k", message="x" * 10)
    assert reply["body"]["code"] == ErrorCode.MESSAGE_TOO_LARGE


def test_reads_and_writes_are_counted_per_role():
    harness = Harness()
    client = authenticated(harness)
    client.reply("rtm/write", channel="k", message=12345)
    client.reply("rtm/read", channel="k")
    stats = harness.services.stats
    assert (stats.writes_count["client"], stats.writes_bytes["client"]) == (1, 5)
    assert (stats.reads_count["client"], stats.reads_bytes["client"]) == (1, 5)


def test_an_engine_that_cannot_answer_makes_each_an_error():
    harness = Harness()
    client = authenticated(harness)
    harness.engine.available = False
    for action in ("rtm/write", "rtm/read", "rtm/delete"):
        reply = client.reply(action, channel="k", message=1)
        assert reply["body"]["code"] == ErrorCode.SHARD_UNAVAILABLE, action
