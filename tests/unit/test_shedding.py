"""Shed versus drop (PROTOCOL §7): what a send queue over its limit gives up, who is told what, and the
counters that record every message dropped. Pure decisions and the real subscription/stats/metrics code;
the end-to-end behaviour over real sockets is in tests/integration/test_fast_forward.py."""

from __future__ import annotations

import json

import cbor2
from prometheus_client.parser import text_string_to_metric_families

from app import codec, metrics, protocol, shedding
from app.protocol import ErrorCode
from app.stats import Stats
from app.stats_publisher import StatsPublisher
from app.subscription import Subscription

from .actions.support import Harness, make_app, messages, role


class Backlog:
    """A subscription as the decision sees it."""

    def __init__(self, name: str, fast_forward: bool, queued: int, position: str) -> None:
        self.name = name
        self.fast_forward = fast_forward
        self.queued = queued
        self.position = position


class TrackingSink:
    """A sink that asks for the owner and message count of each push, as the connection does."""

    tracks_pushes = True

    def __init__(self) -> None:
        self.pushes: list[tuple[int, object, int]] = []
        self.payloads: list[dict] = []

    def send_payload(self, payload: bytes) -> None:
        self.payloads.append(json.loads(payload))

    def send_push(self, counter, subscription_part, tail, owner=None, count=0):
        self.pushes.append((counter, owner, count))


def test_every_queued_push_is_taken_out_and_everything_else_kept_in_order():
    a = Backlog("a", True, 3, "30-0")
    b = Backlog("b", False, 1, "20-0")
    frames = [b"rest-of-a-write", b"a1", b"reply", b"b1", b"a2", b"ping"]
    owners = [None, a, None, b, a, None]
    plan = shedding.shed_queue(frames, owners)
    assert plan.kept == [b"rest-of-a-write", b"reply", b"ping"]
    assert plan.kept_size == sum(map(len, plan.kept))
    assert [entry.subscription for entry in plan.shed] == [a, b]  # in the order their first push was queued
    assert [(e.frames, e.size) for e in plan.shed] == [(2, 4), (1, 2)]


def test_a_fast_forward_subscription_is_fast_forwarded_any_other_is_out_of_sync():
    assert shedding.outcome_for(True) == shedding.FAST_FORWARD == "fast_forward"
    assert shedding.outcome_for(False) == shedding.OUT_OF_SYNC == ErrorCode.OUT_OF_SYNC
    a, b = Backlog("a", True, 3, "30-0"), Backlog("b", False, 1, "20-0")
    plan = shedding.shed_queue([b"a", b"b"], [a, b])
    assert [(e.outcome, e.missed, e.position) for e in plan.shed] == [
        ("fast_forward", 3, "30-0"),
        ("out_of_sync", 1, "20-0"),
    ]
    assert plan.missed == 4


def test_a_queue_without_pushes_has_nothing_to_shed():
    plan = shedding.shed_queue([b"reply", b"reply"], [None, None])
    assert plan.shed == [] and plan.kept == [b"reply", b"reply"]


def test_the_limit_is_exceeded_only_past_it():
    assert not shedding.over_limit(100, 100)
    assert shedding.over_limit(101, 100)


def test_a_subscription_tells_a_tracking_sink_whose_push_it_is_and_how_many_messages_it_holds():
    sink = TrackingSink()
    sub = Subscription(sink, "sid", "ch", "app::ch", None, batch_size=3, batch_flush_interval=60)
    for n in range(3):
        sub.deliver(f"{n + 1}-0", b"%d" % n, 1)
    sub.deliver("4-0", b"7,8", 2)  # a filter that yields two results
    sub.flush()
    assert sink.pushes == [(0, sub, 3), (1, sub, 2)]
    sub.cancel()


def test_the_fast_forward_info_has_the_push_counter_as_id_messages_and_a_position():
    sink = TrackingSink()
    sub = Subscription(sink, "sid", "ch", "app::ch", None, fast_forward=True)
    sub.deliver("1-0", b"1", 1)
    sub.deliver("2-0", b"2", 1)
    pdu = json.loads(sub.info_pdu("slow", "2-0", 2))
    assert pdu == {
        "action": "rtm/subscription/info",
        "id": 2,
        "body": {
            "info": "fast_forward",
            "reason": "slow",
            "subscription_id": "sid",
            "position": "2-0",
            "missed_message_count": 2,
            "messages": [],
        },
    }
    sub.deliver("3-0", b"3", 1)
    assert sink.pushes[-1][0] == 3  # the notice took its place in the sequence of ids


def test_the_out_of_sync_error_carries_code_position_count_and_messages():
    sub = Subscription(TrackingSink(), "sid", "ch", "app::ch", None)
    pdu = json.loads(sub.out_of_sync_pdu("slow", "5-0", 4))
    assert pdu["action"] == "rtm/subscription/error"
    assert pdu["body"] == {
        "subscription_id": "sid",
        "error": "slow",
        "code": "out_of_sync",
        "position": "5-0",
        "missed_message_count": 4,
        "messages": [],
    }


def test_notices_never_lack_a_position_even_before_any_delivery():
    sub = Subscription(TrackingSink(), "sid", "ch", "app::ch", None, fast_forward=True)
    assert json.loads(sub.info_pdu("slow", None, 0))["body"]["position"] == "0-0"
    assert json.loads(sub.out_of_sync_pdu("slow", None, 0))["body"]["position"] == "0-0"


def test_notices_are_the_same_maps_over_cbor():
    info = protocol.subscription_info("sid", 7, "fast_forward", "slow", "9-0", 3)
    error = protocol.subscription_error("sid", "slow", "out_of_sync", "9-0", 3)
    for pdu in (info, error):
        assert cbor2.loads(codec.from_json(pdu)) == json.loads(pdu)


def test_a_detached_subscription_sends_nothing_more():
    sink = TrackingSink()
    sub = Subscription(sink, "sid", "ch", "app::ch", None)
    sub.detach()
    sub.deliver("1-0", b"1", 1)
    sub.send_error("gone", "shard_unavailable", None)
    assert sink.pushes == [] and sink.payloads == []


def test_an_expired_position_with_fast_forward_gets_the_info_then_the_oldest_retained():
    harness = Harness(make_app(history_max_length=2))
    publisher, subscriber = harness.open(), harness.open()
    publisher.authenticate()
    subscriber.authenticate()
    for n in range(4):
        publisher.publish("ch", n)
    received = subscriber.subscribe("ch", position="1-0", fast_forward=True)
    assert [pdu["action"] for pdu in received][:2] == ["rtm/subscribe/ok", "rtm/subscription/info"]
    info = received[1]["body"]
    assert info["info"] == "fast_forward" and info["messages"] == [] and info["position"]
    assert "missed_message_count" not in info  # not known: stream ids are not dense
    assert messages(received) == [2, 3]
    assert harness.services.stats.shed_subscriptions == {"expired_position": 1}


def test_without_fast_forward_an_expired_position_is_still_the_error():
    harness = Harness(make_app(history_max_length=2))
    publisher, subscriber = harness.open(), harness.open()
    publisher.authenticate()
    subscriber.authenticate()
    for n in range(4):
        publisher.publish("ch", n)
    received = subscriber.subscribe("ch", position="1-0", fast_forward=False)
    assert received[1]["body"]["code"] == ErrorCode.EXPIRED_POSITION
    assert harness.services.stats.shed_subscriptions == {}


def test_every_shed_message_is_counted_per_role_and_every_shed_subscription_per_reason():
    stats = Stats()
    stats.on_shed(shedding.FAST_FORWARD, "watcher", 5)
    stats.on_shed(shedding.FAST_FORWARD, "watcher", 2)
    stats.on_shed(shedding.OUT_OF_SYNC, None, 4)
    stats.on_shed(shedding.EXPIRED_POSITION, None, 0)
    assert stats.shed_messages == 11
    assert stats.missed_count == {"watcher": 7, "-": 4}
    assert stats.shed_subscriptions == {"fast_forward": 2, "out_of_sync": 1, "expired_position": 1}


def test_the_stats_document_and_metrics_report_the_shedding():
    harness = Harness(make_app(roles=(role("watcher"),)))
    publisher = StatsPublisher(harness.services, None, lambda: {}, {})  # type: ignore[arg-type]
    stats = harness.services.stats
    stats.on_shed(shedding.FAST_FORWARD, "watcher", 5)
    stats.on_shed(shedding.OUT_OF_SYNC, "watcher", 4)
    document = publisher.collect()
    cobra = document["data"]["cobra"]
    assert cobra["missed_count"] == {"watcher": 9}  # a {name: number} leaf, like every other (§8)
    assert cobra["shed_count"] == {"fast_forward": 1, "out_of_sync": 1}
    assert "missed_count_per_second" in cobra
    found = {}
    for family in text_string_to_metric_families(metrics.render({"n": document}).decode()):
        for sample in family.samples:
            found[(sample.name, *sorted(sample.labels.items()))] = sample.value
    assert found[("cobra_shed_messages_total", ("node", "n"))] == 9
    assert found[("cobra_subscriptions_shed_total", ("node", "n"), ("reason", "out_of_sync"))] == 1
    assert found[("cobra_subscriptions_shed_total", ("node", "n"), ("reason", "fast_forward"))] == 1
