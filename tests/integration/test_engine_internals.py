"""The Redis engine's internals against a real redis-server, in this process: the publisher's NOSCRIPT
retry and natural batching, the reconnect loops of the publisher and the Pub/Sub reader (kill the server,
start it again: they reconnect and resubscribe), the Pub/Sub reconciliation, and the engine's health API.

The engine talks RESP over the ``socket`` module, which the broker's process has gevent-patched; here only
:mod:`app.resp`'s reference is pointed at gevent's sockets, so the rest of the test session is untouched.
"""

from __future__ import annotations

import gevent
import gevent.socket
import orjson
import pytest
import redis

import app.resp
from app.engine import Engine, EngineError
from app.engine.history import HistoryPolicy
from app.engine.paging import replay_pages
from app.engine.publisher import UNAVAILABLE, ShardPublisher
from app.engine.pubsub import ShardSubscriber
from app.engine.shardset import NOT_RECONNECTED
from app.models import Shard
from app.positions import parse_position
from app.resp import RedisAddress, encode_command
from app.subscription import Subscription
from tests.support.processes import RedisProcess

POLICY = HistoryPolicy(1000, 0)


@pytest.fixture(autouse=True)
def gevent_sockets(monkeypatch):
    monkeypatch.setattr(app.resp, "socket", gevent.socket)


@pytest.fixture
def server(tmp_path):
    process = RedisProcess(tmp_path / "redis")
    process.start()
    yield process
    process.stop(kill=True)


@pytest.fixture
def client(server):
    connection = redis.Redis.from_url(server.url)
    yield connection
    connection.close()


def wait_for(condition, timeout=10.0, what="condition"):
    with gevent.Timeout(timeout, AssertionError(f"timed out waiting for {what}")):
        while not condition():
            gevent.sleep(0.02)


@pytest.fixture
def engine(server):
    made = Engine(probe_interval=0.5, subscribe_timeout=3.0)
    made.configure([Shard("s1", server.url)], server.url)
    assert made.wait_ready(10.0)
    yield made
    made.stop(0.5)


class Sink:
    """The client side of a subscription: pushes and subscription errors, decoded."""

    def __init__(self):
        self.pushes = []
        self.errors = []

    def send_payload(self, payload):
        self.errors.append(orjson.loads(payload)["body"])

    def send_push(self, counter, subscription_part, tail):
        self.pushes.append(orjson.loads(b"{" + tail[:-1]))  # the tail closes the body and the push

    def messages(self):
        return [m for push in self.pushes for m in push["messages"]]


class Events:
    """What a shard link reports upward, recorded."""

    def __init__(self):
        self.messages = []
        self.live = []
        self.down = 0
        self.batches = 0

    def on_message(self, link, channel, payload):
        self.messages.append((link, channel, payload))

    def on_live(self, link, channel):
        self.live.append(channel)

    def on_down(self, link):
        self.down += 1

    def on_batch_end(self):
        self.batches += 1


def publisher_for(server, batch_max=2000, on_batch=None):
    publisher = ShardPublisher("s1", RedisAddress(server.url), {}, batch_max, on_batch, reply_timeout=2.0)
    publisher.start()
    assert publisher.wait_connected(10.0)
    return publisher


def submit_and_wait(publisher, command, timeout=5.0):
    result = gevent.event.AsyncResult()
    publisher.submit(command, result.set)
    return result.get(timeout=timeout)


# --- NOSCRIPT ------------------------------------------------------------------------------------------
def test_a_publish_after_script_flush_reloads_the_script_and_is_stored(engine, client):
    first = engine.publish_and_wait("app::ch", b'{"n":1}', POLICY)
    client.script_flush()
    second = engine.publish_and_wait("app::ch", b'{"n":2}', POLICY)
    third = engine.publish_and_wait("app::ch", b'{"n":3}', POLICY)
    assert parse_position(first) < parse_position(second) < parse_position(third)
    assert [fields[b"m"] for _id, fields in client.xrange("app::ch")] == [b'{"n":1}', b'{"n":2}', b'{"n":3}']


def test_a_whole_batch_meeting_noscript_is_retried_in_order(engine, client):
    engine.publish_and_wait("app::ch", b"0", POLICY)
    client.script_flush()
    results = [gevent.event.AsyncResult() for _ in range(20)]
    for i, result in enumerate(results):  # no yield between: one batch, every command meets NOSCRIPT
        engine.publish("app::ch", b"%d" % (i + 1), POLICY, result.set)
    positions = [parse_position(result.get(timeout=10)) for result in results]
    assert positions == sorted(positions) and len(set(positions)) == 20
    assert [fields[b"m"] for _id, fields in client.xrange("app::ch")] == [b"%d" % i for i in range(21)]


# --- natural batching ----------------------------------------------------------------------------------
def test_publishes_made_while_a_batch_is_in_flight_go_as_one_next_batch(server):
    sizes = []
    publisher = publisher_for(server, on_batch=lambda size, seconds: sizes.append(size))
    try:
        replies = [gevent.event.AsyncResult() for _ in range(501)]
        for result in replies:  # the first goes at once; the other 500 queue behind it
            publisher.submit(encode_command(b"INCR", b"counter"), result.set)
        assert [result.get(timeout=10) for result in replies] == list(range(1, 502))
        assert sizes == [1, 500]
        assert publisher.queued == 0 and publisher.drain(1.0)
    finally:
        publisher.stop(1.0)


def test_a_batch_under_load_never_exceeds_batch_max(server):
    sizes = []
    publisher = publisher_for(server, batch_max=100, on_batch=lambda size, seconds: sizes.append(size))
    try:
        replies = [gevent.event.AsyncResult() for _ in range(451)]
        for result in replies:
            publisher.submit(encode_command(b"INCR", b"counter"), result.set)
        assert [result.get(timeout=10) for result in replies] == list(range(1, 452))
        assert sizes == [1, 100, 100, 100, 100, 50]
    finally:
        publisher.stop(1.0)


# --- reconnect loops -----------------------------------------------------------------------------------
def test_the_publisher_fails_publishes_while_redis_is_down_and_reconnects_when_it_is_back(server):
    publisher = publisher_for(server)
    try:
        assert submit_and_wait(publisher, encode_command(b"INCR", b"counter")) == 1
        server.stop()
        outcomes = [submit_and_wait(publisher, encode_command(b"INCR", b"counter")) for _ in range(3)]
        assert outcomes[-1] is UNAVAILABLE  # the first may meet the dying socket; then refused at once
        wait_for(lambda: not publisher.available, what="the publisher to notice")
        server.start()
        assert publisher.wait_connected(10.0)
        assert submit_and_wait(publisher, encode_command(b"INCR", b"counter")) >= 2  # AOF kept the counter
    finally:
        publisher.stop(1.0)


def test_the_subscriber_resubscribes_every_wanted_channel_after_redis_restarts(server, client):
    events = Events()
    link = object()
    subscriber = ShardSubscriber("s1", RedisAddress(server.url), events, link, probe_interval=0.5)
    subscriber.start()
    try:
        ready = [subscriber.subscribe(b"ch1"), subscriber.subscribe(b"ch2")]
        assert all(event.wait(10) for event in ready)
        assert sorted(events.live) == [b"ch1", b"ch2"]
        client.publish("ch1", b"1-0 {}")
        wait_for(lambda: events.messages, what="the first message")
        assert events.messages == [(link, b"ch1", b"1-0 {}")]
        assert events.batches >= 1

        server.stop()
        wait_for(lambda: events.down == 1, what="on_down")
        assert not any(event.is_set() for event in ready)  # not live until Redis confirms again
        server.start()
        assert all(event.wait(10) for event in ready)
        assert sorted(events.live) == [b"ch1", b"ch1", b"ch2", b"ch2"]
        assert sorted(client.pubsub_channels()) == [b"ch1", b"ch2"]
        client.publish("ch2", b"2-0 {}")
        wait_for(lambda: len(events.messages) == 2, what="a message after the restart")
        assert events.messages[1] == (link, b"ch2", b"2-0 {}")
    finally:
        subscriber.stop()


def test_the_subscriber_reconciles_quick_changes_with_what_redis_holds(server, client):
    events = Events()
    subscriber = ShardSubscriber("s1", RedisAddress(server.url), events, object(), probe_interval=0.5)
    subscriber.start()
    try:
        assert all(subscriber.subscribe(c).wait(10) for c in (b"a", b"b", b"c"))
        subscriber.unsubscribe(b"b")
        again = subscriber.subscribe(b"b")  # same turn: the UNSUBSCRIBE is cancelled, b stays live
        assert again.is_set()
        subscriber.unsubscribe(b"c")
        subscriber.subscribe(b"d")
        gevent.sleep(0)  # the flush goes out...
        subscriber.unsubscribe(b"d")  # ...and d is dropped while its SUBSCRIBE travels
        back = subscriber.subscribe(b"c")  # c is wanted again while its UNSUBSCRIBE travels
        assert back.wait(10)
        wait_for(lambda: sorted(client.pubsub_channels()) == [b"a", b"b", b"c"], what="Redis to agree")
        assert subscriber.channels == {b"a", b"b", b"c"}
    finally:
        subscriber.stop()


def test_a_subscription_is_told_of_an_outage_and_catches_up_when_redis_is_back(engine, server):
    sink = Sink()
    sub = Subscription(sink, "sid", "ch", "app::ch", None)
    engine.subscribe(sub, replay=False)
    engine.publish_and_wait("app::ch", b'{"n":1}', POLICY)
    wait_for(lambda: sink.messages() == [{"n": 1}], what="the live message")

    server.stop()
    wait_for(lambda: sink.errors, what="the outage notice")
    assert sink.errors[0]["code"] == "shard_unavailable"
    with pytest.raises(EngineError):
        engine.publish_and_wait("app::ch", b'{"n":2}', POLICY, timeout=2.0)

    server.start()
    wait_for(lambda: engine.shard_statuses()[0].available, what="the link to come back")
    engine.publish_and_wait("app::ch", b'{"n":3}', POLICY)
    wait_for(lambda: sink.messages() == [{"n": 1}, {"n": 3}], what="live delivery after the restart")


def test_what_the_shard_stored_while_the_feed_was_cut_is_filled_in_before_newer_messages(engine, client):
    sink = Sink()
    sub = Subscription(sink, "sid", "ch", "app::ch", None)
    engine.subscribe(sub, replay=False)
    engine.publish_and_wait("app::ch", b'{"n":1}', POLICY)
    wait_for(lambda: sink.messages() == [{"n": 1}], what="the live message")
    # Cut only the Pub/Sub connection, and keep it from coming back until we say so: a new connection
    # cannot SUBSCRIBE without a password, while the publisher's open connection keeps working.
    client.config_set("requirepass", "let-me-in")
    client.client_kill_filter(_type="pubsub")
    wait_for(lambda: sink.errors, what="the interruption notice")
    engine.publish_and_wait("app::ch", b'{"n":2}', POLICY)  # stored; its live copy reaches nobody here
    client.config_set("requirepass", "")
    wait_for(lambda: engine.shard_statuses()[0].available, what="the Pub/Sub reader to come back")
    engine.publish_and_wait("app::ch", b'{"n":3}', POLICY)
    wait_for(lambda: len(sink.messages()) >= 3, what="the fill and the live message")
    gevent.sleep(0.2)
    assert sink.messages() == [{"n": 1}, {"n": 2}, {"n": 3}]


# --- health --------------------------------------------------------------------------------------------
def test_shard_statuses_pings_and_drain_report_each_shard(engine, server):
    # The Pub/Sub reader may still be connecting when the fixture hands the engine over.
    wait_for(lambda: engine.ping_shards(2.0) == {"s1": None}, what="both links to connect")
    [status] = engine.shard_statuses()
    assert (status.name, status.available, status.queued) == ("s1", True, 0)
    assert engine.drain(1.0)
    server.stop()
    wait_for(lambda: not engine.shard_statuses()[0].available, what="the outage to show")
    problem = engine.ping_shards(2.0)["s1"]
    assert problem is not None and problem.startswith("unreachable (")
    server.start()
    # Redis answers again before the links have reconnected (they back off), or after: both are right.
    assert engine.ping_shards(2.0)["s1"] in (None, NOT_RECONNECTED)
    wait_for(lambda: engine.ping_shards(2.0)["s1"] is None, what="the links to reconnect")


# --- paged replay and trimming ---------------------------------------------------------------------------
def _replay_after(client, position, upto, trim_to=None):
    """Replay ``app::ch`` after ``position`` up to ``upto``, the stream first trimmed to its newest
    ``trim_to`` entries (as if that happened right after the resume was decided): (messages, expired)."""
    if trim_to is not None:
        client.xtrim("app::ch", maxlen=trim_to, approximate=False)
    sink, expired = Sink(), []
    sub = Subscription(sink, "sid", "ch", "app::ch", None)
    sub.begin_sync()
    replay_pages(client, sub, position, False, upto, lambda _sub, asked, at: expired.append((asked, at)))
    return [m["n"] for m in sink.messages()], expired


@pytest.fixture
def ten(client):
    ids = [f"{1000 + 10 * n}-0" for n in range(10)]
    for n, entry_id in enumerate(ids):
        client.xadd("app::ch", {"m": orjson.dumps({"n": n})}, id=entry_id)
    return ids


def test_a_resume_replays_what_follows_its_position_exactly(client, ten):
    assert _replay_after(client, ten[3], ten[-1]) == (list(range(4, 10)), [])


def test_a_resume_after_a_position_between_entries_replays_what_follows_it(client, ten):
    assert _replay_after(client, "1035-0", ten[-1]) == (list(range(4, 10)), [])  # between 1030-0 and 1040-0


def test_a_resume_whose_history_was_trimmed_after_the_decision_is_told_where_it_restarts(client, ten):
    assert _replay_after(client, ten[3], ten[-1], trim_to=4) == ([6, 7, 8, 9], [(ten[3], ten[6])])
