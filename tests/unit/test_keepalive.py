"""Keepalive timing (PROTOCOL §1 "Better", RFC 6455 §5.5.2-3), one rule per test, time passed in."""

from __future__ import annotations

from app.websocket.keepalive import Keepalive, KeepaliveAction, poll_interval

NOTHING, PING, DROP = KeepaliveAction.NOTHING, KeepaliveAction.PING, KeepaliveAction.DROP


def test_a_connection_that_keeps_talking_is_never_pinged():
    keepalive = Keepalive(interval=30.0, timeout=10.0, now=0.0)
    for now in range(0, 300, 20):
        keepalive.received(float(now))
        assert keepalive.poll(now + 19.0) is NOTHING


def test_a_connection_silent_for_the_interval_is_pinged():
    keepalive = Keepalive(interval=30.0, timeout=10.0, now=0.0)
    assert keepalive.poll(29.9) is NOTHING
    assert keepalive.poll(30.0) is PING
    assert keepalive.ping_outstanding


def test_the_opening_counts_as_hearing_from_the_client():
    keepalive = Keepalive(interval=30.0, timeout=10.0, now=500.0)
    assert keepalive.poll(520.0) is NOTHING


def test_one_ping_per_silence():
    keepalive = Keepalive(interval=30.0, timeout=10.0, now=0.0)
    assert keepalive.poll(30.0) is PING
    assert keepalive.poll(31.0) is NOTHING
    assert keepalive.poll(39.9) is NOTHING


def test_a_ping_unanswered_for_the_timeout_drops_the_connection():
    keepalive = Keepalive(interval=30.0, timeout=10.0, now=0.0)
    assert keepalive.poll(32.0) is PING  # a late poll: the timeout counts from the ping itself
    assert keepalive.poll(41.9) is NOTHING
    assert keepalive.poll(42.0) is DROP
    assert keepalive.poll(43.0) is DROP  # until the connection is gone


def test_5_5_3_anything_heard_answers_a_ping_not_only_a_pong():
    keepalive = Keepalive(interval=30.0, timeout=10.0, now=0.0)
    assert keepalive.poll(30.0) is PING
    keepalive.received(35.0)  # a publish, a pong, a part of a frame: all the same
    assert not keepalive.ping_outstanding
    assert keepalive.poll(45.0) is NOTHING
    assert keepalive.poll(65.0) is PING  # a new silence, a new ping


def test_next_due_says_when_polling_can_change_anything():
    keepalive = Keepalive(interval=30.0, timeout=10.0, now=5.0)
    assert keepalive.next_due() == 35.0
    assert keepalive.poll(keepalive.next_due()) is PING
    assert keepalive.next_due() == 45.0
    assert keepalive.poll(keepalive.next_due()) is DROP


def test_polls_are_a_quarter_of_the_shorter_period_and_never_under_50_ms():
    assert poll_interval(30.0, 10.0) == 2.5
    assert poll_interval(0.1, 0.1) == 0.05
