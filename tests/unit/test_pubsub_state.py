"""The Pub/Sub subscription reconciliation of one connection, without a socket: what is sent on a flush,
what a confirmation means, and what a reconnect subscribes again."""

from __future__ import annotations

from app.engine.pubsub_state import PubSubState


def live(channels=(b"a",)):
    """A state whose channels Redis has confirmed."""
    state = PubSubState()
    for channel in channels:
        state.want(channel)
    state.take_pending()
    for channel in channels:
        assert state.subscribed(channel)
    return state


def test_a_new_channel_is_subscribed_on_the_next_flush():
    state = PubSubState()
    assert state.want(b"a") is False
    assert state.has_pending
    assert state.take_pending() == ([], [b"a"])
    assert not state.has_pending


def test_requests_of_one_turn_go_out_together():
    state = PubSubState()
    for channel in (b"a", b"b", b"c"):
        state.want(channel)
    unsubscribe, subscribe = state.take_pending()
    assert unsubscribe == [] and sorted(subscribe) == [b"a", b"b", b"c"]


def test_a_confirmation_makes_a_wanted_channel_live():
    state = PubSubState()
    state.want(b"a")
    state.take_pending()
    assert state.subscribed(b"a") is True
    assert not state.has_pending


def test_wanting_a_confirmed_channel_again_needs_nothing_sent():
    state = live()
    assert state.want(b"a") is True
    assert not state.has_pending


def test_a_channel_wanted_and_dropped_before_the_flush_sends_nothing_to_subscribe():
    state = PubSubState()
    state.want(b"a")
    assert state.unwant(b"a") is True
    assert state.take_pending() == ([b"a"], [])  # harmless: Redis confirms an unknown unsubscribe too


def test_dropping_a_channel_that_was_not_wanted_changes_nothing():
    state = PubSubState()
    assert state.unwant(b"a") is False
    assert not state.has_pending


def test_a_live_channel_dropped_is_unsubscribed_on_the_next_flush():
    state = live()
    assert state.unwant(b"a")
    assert state.take_pending() == ([b"a"], [])
    assert state.unsubscribing == {b"a"}


def test_a_channel_dropped_while_its_subscribe_travels_is_unsubscribed_when_confirmed():
    state = PubSubState()
    state.want(b"a")
    state.take_pending()  # SUBSCRIBE a is on the wire
    state.unwant(b"a")
    state.take_pending()  # so is UNSUBSCRIBE a
    assert state.subscribed(b"a") is False
    state.unsubscribed(b"a")
    assert not state.confirmed and not state.has_pending


def test_a_subscribe_confirmed_after_the_channel_was_dropped_asks_for_an_unsubscribe():
    state = PubSubState()
    state.want(b"a")
    state.take_pending()
    state.wanted.discard(b"a")  # as if dropped with its UNSUBSCRIBE still pending
    assert state.subscribed(b"a") is False
    assert state.take_pending() == ([b"a"], [])


def test_a_channel_wanted_again_while_its_unsubscribe_travels_waits_for_the_confirmation():
    state = live()
    state.unwant(b"a")
    state.take_pending()  # UNSUBSCRIBE a on the wire
    assert state.want(b"a") is False
    assert not state.has_pending  # subscribing now would be undone by the UNSUBSCRIBE in flight
    state.unsubscribed(b"a")
    assert state.take_pending() == ([], [b"a"])
    assert state.subscribed(b"a") is True


def test_wanting_a_channel_again_before_its_unsubscribe_is_sent_cancels_the_unsubscribe():
    state = live()
    state.unwant(b"a")
    assert state.want(b"a") is True  # still confirmed, nothing was sent
    assert not state.has_pending


def test_an_unsubscribe_confirmation_of_an_unwanted_channel_ends_it():
    state = live()
    state.unwant(b"a")
    state.take_pending()
    state.unsubscribed(b"a")
    assert not state.confirmed and not state.unsubscribing and not state.has_pending


def test_a_reconnect_subscribes_everything_wanted_and_forgets_the_rest():
    state = live((b"a", b"b"))
    state.unwant(b"b")
    state.take_pending()  # UNSUBSCRIBE b, lost with the connection
    state.want(b"c")  # not sent yet
    state.connected()
    assert not state.confirmed and not state.unsubscribing
    unsubscribe, subscribe = state.take_pending()
    assert unsubscribe == [] and sorted(subscribe) == [b"a", b"c"]


def test_after_a_reconnect_nothing_is_live_until_confirmed_again():
    state = live()
    state.connected()
    assert state.take_pending() == ([], [b"a"])
    assert state.want(b"a") is False
    assert state.subscribed(b"a") is True
