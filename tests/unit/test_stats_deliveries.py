"""Deliveries per role (PROTOCOL §8 ``subscribed_count``) are counted when they happen: a subscription that
starts and ends between two stats ticks (``cobra health``) counts as much as one that lives for hours.
Real action handlers and the real stats publisher, around the in-memory engine."""

from __future__ import annotations

from app.actions import drop_subscriptions
from app.stats_publisher import StatsPublisher

from .actions.support import Harness, make_app, role


def setup():
    harness = Harness(make_app(roles=(role("health"), role("watcher"), role("writer"))))
    sessions = {}
    clients = {}
    for name in ("health", "watcher", "writer"):
        client = harness.open()
        client.authenticate(name)
        sessions[client.session.id] = client.session
        clients[name] = client
    publisher = StatsPublisher(harness.services, None, lambda: sessions, {})  # type: ignore[arg-type]
    return harness, clients, publisher


def delivered(publisher: StatsPublisher) -> dict[str, float]:
    return publisher.collect()["data"]["cobra"]["subscribed_count"]


def test_a_subscription_that_lives_between_two_ticks_is_counted_for_its_role():
    _, clients, publisher = setup()
    publisher.collect()
    health, writer = clients["health"], clients["writer"]
    health.subscribe("probe")
    writer.publish("probe", {"ok": True})
    assert health.send("rtm/unsubscribe", subscription_id="probe")[-1]["action"] == "rtm/unsubscribe/ok"
    assert delivered(publisher).get("health") == 1
    assert delivered(publisher).get("health") == 1  # counted once, not again at the next tick


def test_live_and_ended_subscriptions_add_up_without_double_counting():
    _, clients, publisher = setup()
    watcher, writer = clients["watcher"], clients["writer"]
    watcher.subscribe("a")
    watcher.subscribe("b")
    writer.publish("a", 1)
    writer.publish("b", 2)
    assert delivered(publisher)["watcher"] == 2  # live: sampled at the tick
    writer.publish("a", 3)
    watcher.send("rtm/unsubscribe", subscription_id="a")  # ends with one delivery not yet counted
    writer.publish("b", 4)
    assert delivered(publisher)["watcher"] == 4
    assert delivered(publisher)["watcher"] == 4


def test_replaced_subscriptions_and_closed_connections_count_what_they_delivered():
    harness, clients, publisher = setup()
    publisher.collect()
    watcher, writer = clients["watcher"], clients["writer"]
    watcher.subscribe("c")
    writer.publish("c", 1)
    watcher.subscribe("c", force=True)  # the first subscription is replaced
    writer.publish("c", 2)
    drop_subscriptions(watcher.session, harness.services)  # what a closing connection does
    assert delivered(publisher)["watcher"] == 2


def test_a_new_handshake_ends_the_subscriptions_and_keeps_their_deliveries():
    _, clients, publisher = setup()
    publisher.collect()
    health, writer = clients["health"], clients["writer"]
    health.subscribe("probe")
    writer.publish("probe", 1)
    health.transport.take()
    health.handshake("health")
    assert health.session.subscriptions == {}
    assert delivered(publisher)["health"] == 1
