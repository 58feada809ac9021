"""Counters of one broker process, cheap enough for the hot path (a dict increment per message).

Per-role counters are totals since start; per-channel counters cover the current reporting interval only,
so a process that sees millions of channels does not keep a counter for each forever.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .connection import Connection


class Stats:
    def __init__(self) -> None:
        # totals per role (PROTOCOL §8 "cobra" section)
        self.published_count: Counter[str] = Counter()
        self.published_bytes: Counter[str] = Counter()
        self.reads_count: Counter[str] = Counter()
        self.reads_bytes: Counter[str] = Counter()
        self.writes_count: Counter[str] = Counter()
        self.writes_bytes: Counter[str] = Counter()
        # this interval, per channel key (PROTOCOL §8 "channel_data" section)
        self.channel_published_count: Counter[bytes] = Counter()
        self.channel_published_bytes: Counter[bytes] = Counter()
        self.channel_delivered_count: Counter[bytes] = Counter()
        self.channel_delivered_bytes: Counter[bytes] = Counter()
        # process-wide totals
        self.publishes = 0
        self.deliveries = 0
        self.delivered_bytes = 0
        self.errors = 0
        self.auth_failures = 0
        self.slow_consumer_disconnects = 0
        self.publish_batches = 0
        self.publish_batch_commands = 0
        self.publish_batch_seconds = 0.0
        self.publish_batch_max_seconds = 0.0

    # ------------------------------------------------------------------ hot path
    def on_publish(self, conn: Connection, channels: list[str], size: int) -> None:
        role = conn.role_name or "-"
        n = len(channels)
        self.publishes += n
        self.published_count[role] += n
        self.published_bytes[role] += size * n
        prefix = conn.app_key + "::"
        for channel in channels:
            key = (prefix + channel).encode()
            self.channel_published_count[key] += 1
            self.channel_published_bytes[key] += size

    def on_delivery(self, channel: bytes, count: int, size: int) -> None:
        self.deliveries += count
        self.delivered_bytes += count * size
        self.channel_delivered_count[channel] += count
        self.channel_delivered_bytes[channel] += count * size

    def on_publish_batch(self, size: int, seconds: float) -> None:
        self.publish_batches += 1
        self.publish_batch_commands += size
        self.publish_batch_seconds += seconds
        if seconds > self.publish_batch_max_seconds:
            self.publish_batch_max_seconds = seconds

    def on_read(self, conn: Connection, channel: str, size: int) -> None:
        role = conn.role_name or "-"
        self.reads_count[role] += 1
        self.reads_bytes[role] += size

    def on_write(self, conn: Connection, channel: str, size: int) -> None:
        role = conn.role_name or "-"
        self.writes_count[role] += 1
        self.writes_bytes[role] += size
