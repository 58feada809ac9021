"""Reconnect waits (app.engine.backoff): growing delays, cut short when the address to reach changes."""

import gevent

from app.engine.backoff import Backoff


def test_delays_double_up_to_the_ceiling_and_reset():
    backoff = Backoff(first=0.05, ceiling=0.3)
    assert [backoff.next() for _ in range(5)] == [0.05, 0.1, 0.2, 0.3, 0.3]
    backoff.reset()
    assert backoff.next() == 0.05


def test_retry_now_ends_a_wait_and_starts_the_delays_afresh():
    backoff = Backoff(first=60.0, ceiling=60.0)  # a wait nobody would sit out in a test
    waiter = gevent.spawn(backoff.wait)
    gevent.sleep(0)  # the waiter is now in its wait
    assert not waiter.dead
    backoff.retry_now()
    waiter.join(timeout=10)
    assert waiter.dead and waiter.successful()
    assert backoff.delay == 60.0  # reset to the first delay, not doubled


def test_retry_now_before_a_wait_makes_that_wait_immediate_once():
    backoff = Backoff(first=60.0, ceiling=60.0)
    backoff.retry_now()  # the address changed while connected: the next reconnect goes at once
    waiter = gevent.spawn(backoff.wait)
    waiter.join(timeout=10)
    assert waiter.dead
    second = gevent.spawn(backoff.wait)  # and only that one
    second.join(timeout=0.2)
    assert not second.dead
    second.kill()
