"""Per-app and per-connection limits: what each protects is written next to it. No I/O.

A limit set on an app (:class:`app.models.AppSettings`) wins over the broker-wide default from
:class:`app.settings.Settings`; 0 or unset means "no limit" for counts and rates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .protocol import ActionError, ErrorCode

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .models import App
    from .session import TokenBucket
    from .settings import Settings
    from .subscription import Subscription

BURST_SECONDS = 2.0  # a rate limit lets a connection burst this many seconds' worth of publishes


class Limits:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _app_value(self, app: App | None, name: str, default: float) -> float:
        value = getattr(app.settings, name) if app is not None else None
        return default if value is None else value

    def check_publish(self, bucket: TokenBucket, app: App | None) -> None:
        """Publish rate per connection (a token bucket, ``bucket``): protects Redis and every subscriber
        from one runaway publisher."""
        rate = self._app_value(app, "publish_rate", self.settings.publish_rate)
        if rate > 0 and not bucket.take(rate, BURST_SECONDS):
            raise ActionError(f"publish rate over {rate:g}/s", ErrorCode.RATE_LIMITED)

    def check_message_size(self, app: App | None, size: int) -> None:
        """Message size per app (never above the broker's frame limit): bounds Redis memory per message
        and what every subscriber must receive."""
        limit = self._app_value(app, "max_message_size", 0)
        if limit and size > limit:
            raise ActionError(
                f"message of {size} bytes is over the limit of {int(limit)}", ErrorCode.MESSAGE_TOO_LARGE
            )

    def check_publish_channels(self, app: App | None, channels: list[str]) -> None:
        """Channels one publish may name, and the length of each: every channel named is a Redis stream
        kept for the history's age and a key in the stats documents, so one 792 KB publish naming 99,000
        channels would create 99,000 streams, and 500 KB names would inflate the stats to megabytes."""
        limit = self._app_value(app, "max_publish_channels", self.settings.max_publish_channels)
        if limit and len(channels) > limit:
            raise ActionError(
                f"publish names {len(channels)} channels, more than the limit of {int(limit)}",
                ErrorCode.MESSAGE_TOO_LARGE,
            )
        longest = self._app_value(app, "max_channel_length", self.settings.max_channel_length)
        if longest:
            for channel in channels:
                if len(channel) * 4 > longest:  # the cheap test of check_channel_name, limit read once
                    self.check_channel_name(app, channel)

    def check_channel_name(self, app: App | None, channel: str) -> None:
        """The longest channel name, in UTF-8 bytes (a name is a Redis key, a routing-table key, a field of
        every push and of the stats): ``bad_schema``, the field itself is unacceptable."""
        limit = self._app_value(app, "max_channel_length", self.settings.max_channel_length)
        # len(str) <= bytes <= 4 * len(str): encode only the names that could be over.
        if limit and len(channel) * 4 > limit and len(channel.encode("utf-8", "surrogatepass")) > limit:
            raise ActionError(
                f"channel name of {len(channel.encode('utf-8', 'surrogatepass'))} bytes is over the limit "
                f"of {int(limit)}",
                ErrorCode.BAD_SCHEMA,
            )

    def check_filter_bytes(
        self, subscriptions: Iterable[Subscription], text: str, replaced: Subscription | None
    ) -> None:
        """Characters of the distinct compiled filters one connection holds plus a new one (``text``): each
        distinct filter is compiled Python code kept while subscribed (1,000 distinct 2 KB projections
        grew a process by 102 MB), so bound what one connection can pin. Identical texts compile to one
        shared object, so only distinct texts count; a forced replacement's old filter is about to go."""
        limit = self.settings.filter_max_bytes_per_connection
        if not limit:
            return
        distinct = {
            sub.filter.text for sub in subscriptions if sub.filter is not None and sub is not replaced
        }
        held = sum(map(len, distinct))
        adding = 0 if text in distinct else len(text)
        if held + adding > limit:
            raise ActionError(
                f"this connection's distinct filters would hold {held + adding} characters, over the limit "
                f"of {limit} (filter_max_bytes_per_connection); unsubscribe some or share filters",
                ErrorCode.SUBSCRIPTION_LIMIT,
            )

    def check_subscriptions(self, app: App | None, held: int) -> None:
        """Subscriptions per connection (``held`` already): bounds the routing table and the fan-out one
        client can cause."""
        limit = self._app_value(app, "max_subscriptions", self.settings.max_subscriptions)
        if limit and held >= limit:
            raise ActionError(f"too many subscriptions (limit {int(limit)})", ErrorCode.SUBSCRIPTION_LIMIT)

    def send_queue_limit(self, app: App | None) -> int:
        """Bytes queued for one client before it is disconnected as a slow consumer: bounds the memory one
        stalled reader can pin. Never unbounded, so 0 means the broker-wide default too."""
        limit = self._app_value(app, "send_queue_max_bytes", 0)
        return int(limit) if limit else self.settings.send_queue_max_bytes

    def app_connection_refusal(self, app: App, app_connections: int) -> str | None:
        """Why one more authenticated connection of ``app`` is refused (``app_connections`` already
        authenticated across the cluster), checked again as a client authenticates: many anonymous sockets
        of one app may authenticate at once."""
        per_app = self._app_value(app, "max_connections", 0)
        if per_app and app_connections >= per_app:
            return f"app {app.key} is at its limit of {int(per_app)} connections"
        return None

    def connection_refusal(self, app: App, app_connections: int, ip_connections: int) -> str | None:
        """Why a new connection is refused, if it is: connections per app, counted across the cluster (one
        tenant cannot starve the others) and per IP address, counted per process (one host cannot exhaust
        a process's file descriptors)."""
        per_app = self._app_value(app, "max_connections", 0)
        if per_app and app_connections >= per_app:
            return f"app {app.key} is at its limit of {int(per_app)} connections"
        per_ip = self._app_value(app, "max_connections_per_ip", self.settings.max_connections_per_ip)
        if per_ip and ip_connections >= per_ip:
            return f"this address is at its limit of {int(per_ip)} connections"
        return None
