"""Counters of one broker process, cheap enough for the hot path (a dict increment per message).

Per-role counters are totals since start; per-channel counters cover the current reporting interval only
(:meth:`Stats.take_channel_interval` hands them over and starts afresh), so a process that sees millions of
channels does not keep a counter for each forever. What is derived rather than counted (per-app totals,
rates) is computed once per stats tick by :mod:`app.stats_publisher`.

Deliveries per role are counted by each subscription (one integer increment per push, no dict lookup on
the fan-out path); a stats tick adds what the live ones delivered since the last tick, and a subscription
that ends hands what it delivered since then over to :meth:`Stats.on_subscription_end` — so one that
starts and ends between two ticks (``cobra health``) is counted too.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .channels import channel_key

if TYPE_CHECKING:
    from .session import Session
    from .subscription import Subscription

# Upper bounds (seconds) of the publish-batch latency histogram: one pipelined round trip to Redis takes
# ~0.1 ms on loopback and tens of ms for a big batch over a network; past 1 s something is wrong.
BATCH_SECONDS_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


@dataclass
class ChannelInterval:
    """What each channel (``b"<app>::<channel>"``) saw during one reporting interval."""

    published_count: Counter[bytes]
    published_bytes: Counter[bytes]
    delivered_count: Counter[bytes]
    delivered_bytes: Counter[bytes]


class Stats:
    def __init__(self) -> None:
        # totals per role (PROTOCOL §8 "cobra" section)
        self.published_count: Counter[str] = Counter()
        self.published_bytes: Counter[str] = Counter()
        self.reads_count: Counter[str] = Counter()
        self.reads_bytes: Counter[str] = Counter()
        self.writes_count: Counter[str] = Counter()
        self.writes_bytes: Counter[str] = Counter()
        # (role, channel key) → deliveries of the subscriptions that ended since the last stats tick, not
        # yet added to the role's totals (one entry per role and channel, however many subscriptions)
        self.ended_deliveries: Counter[tuple[str, str]] = Counter()
        # this interval, per channel key (PROTOCOL §8 "channel_data" section)
        self.channel_published_count: Counter[bytes] = Counter()
        self.channel_published_bytes: Counter[bytes] = Counter()
        self.channel_delivered_count: Counter[bytes] = Counter()
        self.channel_delivered_bytes: Counter[bytes] = Counter()
        # app key → channel → its b"<app>::<channel>" counter key; emptied with the interval's counters, so
        # it never names more channels than they do
        self._channel_keys: dict[str, dict[str, bytes]] = {}
        # process-wide totals
        self.publishes = 0
        self.published_total_bytes = 0
        self.deliveries = 0
        self.delivered_bytes = 0
        self.errors = 0
        self.auth_failures = 0
        self.auth_timeouts = 0  # connections closed for not authenticating within auth_timeout
        self.slow_consumer_disconnects = 0
        # PROTOCOL §7 shedding: messages dropped from slow clients' queues (per role, and in all), and the
        # subscriptions told so, per reason (fast_forward, out_of_sync, expired_position)
        self.missed_count: Counter[str] = Counter()
        self.shed_messages = 0
        self.shed_subscriptions: Counter[str] = Counter()
        self.publish_batches = 0
        self.publish_batch_commands = 0
        self.publish_batch_seconds = 0.0
        self.publish_batch_max_seconds = 0.0
        # non-cumulative counts per bucket of BATCH_SECONDS_BUCKETS, the last one for "+Inf"
        self.publish_batch_buckets = [0] * (len(BATCH_SECONDS_BUCKETS) + 1)

    # ------------------------------------------------------------------ hot path
    def on_publish(self, app_key: str, role_name: str | None, channels: list[str], size: int) -> None:
        role = role_name or "-"
        n = len(channels)
        self.publishes += n
        self.published_total_bytes += size * n
        self.published_count[role] += n
        self.published_bytes[role] += size * n
        # b"<app>::<channel>" is built and encoded once per channel per interval, not once per publish
        keys = self._channel_keys.get(app_key)
        if keys is None:
            keys = self._channel_keys[app_key] = {}
        counts, sizes = self.channel_published_count, self.channel_published_bytes
        for channel in channels:
            key = keys.get(channel)
            if key is None:
                key = keys[channel] = channel_key(app_key, channel).encode()
            counts[key] += 1
            sizes[key] += size

    def on_delivery(self, channel: bytes, count: int, size: int) -> None:
        self.deliveries += count
        self.delivered_bytes += count * size
        self.channel_delivered_count[channel] += count
        self.channel_delivered_bytes[channel] += count * size

    def on_publish_batch(self, size: int, seconds: float) -> None:
        # once per pipelined batch (up to publish_batch_max messages), not per message
        self.publish_batches += 1
        self.publish_batch_commands += size
        self.publish_batch_seconds += seconds
        self.publish_batch_buckets[bisect_left(BATCH_SECONDS_BUCKETS, seconds)] += 1
        if seconds > self.publish_batch_max_seconds:
            self.publish_batch_max_seconds = seconds

    def on_shed(self, reason: str, role_name: str | None, missed: int) -> None:
        """A subscription was shed (PROTOCOL §7): ``missed`` messages it will never get, ``reason`` one of
        :mod:`app.shedding`'s outcomes. Off the hot path: once per subscription per shedding episode."""
        self.shed_subscriptions[reason] += 1
        if missed:
            self.shed_messages += missed
            self.missed_count[role_name or "-"] += missed

    def on_read(self, session: Session, channel: str, size: int) -> None:
        role = session.role_name or "-"
        self.reads_count[role] += 1
        self.reads_bytes[role] += size

    def on_write(self, session: Session, channel: str, size: int) -> None:
        role = session.role_name or "-"
        self.writes_count[role] += 1
        self.writes_bytes[role] += size

    def on_subscription_end(self, sub: Subscription, role_name: str | None) -> None:
        """Once per subscription that ends (unsubscribe, replaced, re-handshake, connection closed): keep
        what it delivered since the last tick for the role's totals. Calling it twice counts nothing twice."""
        delta = sub.delivered - sub.reported
        if delta > 0:
            sub.reported = sub.delivered
            self.ended_deliveries[(role_name or "-", sub.key)] += delta

    # ------------------------------------------------------------------ once per stats tick
    def take_ended_deliveries(self) -> Counter[tuple[str, str]]:
        """What the subscriptions that ended since the last tick delivered; counting restarts from zero."""
        ended, self.ended_deliveries = self.ended_deliveries, Counter()
        return ended

    def take_channel_interval(self) -> ChannelInterval:
        """The per-channel counters of the interval that ends now; counting restarts from zero."""
        interval = ChannelInterval(
            self.channel_published_count,
            self.channel_published_bytes,
            self.channel_delivered_count,
            self.channel_delivered_bytes,
        )
        self.channel_published_count = Counter()
        self.channel_published_bytes = Counter()
        self.channel_delivered_count = Counter()
        self.channel_delivered_bytes = Counter()
        self._channel_keys = {}
        return interval

    def batch_histogram(self) -> list[tuple[str, int]]:
        """Cumulative (upper bound, count) pairs, Prometheus style, ending with ``"+Inf"``."""
        pairs = []
        running = 0
        for bound, count in zip(
            (*map(str, BATCH_SECONDS_BUCKETS), "+Inf"), self.publish_batch_buckets, strict=True
        ):
            running += count
            pairs.append((bound, running))
        return pairs
