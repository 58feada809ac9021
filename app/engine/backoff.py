"""Retrying a shard that is down: how long to wait between attempts, and how much to log about it.

The publisher and the Pub/Sub reader of every shard reconnect on their own; both wait the same way
(doubling from 50 ms to 2 s) and log an outage the same way (its first failure, then one line a minute).
A wait is cut short when the address to reach changes (:meth:`Backoff.retry_now`).
"""

from __future__ import annotations

import logging
import time

from gevent.event import Event

log = logging.getLogger(__name__)


class Backoff:
    """Delays between reconnection attempts: 50 ms, doubling up to ``ceiling``; back to the start once a
    connection succeeds, so a short blip is retried at once and a long outage costs one attempt per 2 s."""

    def __init__(self, first: float = 0.05, ceiling: float = 2.0) -> None:
        self.first = first
        self.ceiling = ceiling
        self.delay = first
        self._now = Event()

    def next(self) -> float:
        """The delay to sleep before the next attempt."""
        delay = self.delay
        self.delay = min(delay * 2, self.ceiling)
        return delay

    def reset(self) -> None:
        self.delay = self.first

    def wait(self) -> None:
        """Sleep the next delay, or less if :meth:`retry_now` is called meanwhile."""
        if self._now.wait(self.next()):
            self.reset()
        self._now.clear()

    def retry_now(self) -> None:
        """The address to reach changed (a Sentinel named a new master): end the current wait, and the
        next one, at once. Without it a failover was followed only when the wait for the old, dead
        master ended: the delays had grown to 1.6 s by the time Sentinel named the new master, 0.9 s of
        every failover measured by ``python -m bench.ha_bench`` (3.17 s from the kill to the first ack)."""
        self._now.set()


class OutageLog:
    """A shard that stays down is retried every two seconds: log the first failure of an outage and then
    one line a minute, not one line per attempt."""

    def __init__(self, what: str, logger: logging.Logger = log, every: float = 60.0) -> None:
        self.what = what
        self.log = logger
        self.every = every
        self.failures = 0
        self._logged_at = 0.0

    def failed(self, exc: Exception) -> None:
        self.failures += 1
        now = time.monotonic()
        if self.failures == 1 or now - self._logged_at >= self.every:
            self._logged_at = now
            self.log.warning("%s (attempt %d): %s", self.what, self.failures, exc)

    def recovered(self) -> None:
        self.failures = 0
