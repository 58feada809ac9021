"""The local routing table and fan-out: which subscriptions of this process follow which Redis channel.

Subscriptions of one channel are grouped by filter, so each distinct StreamSQL filter runs once per message,
the message is parsed at most once for all filters, and each delivered message is serialised once; a
subscription only adds its own push counter and id (:mod:`app.subscription`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from .. import protocol
from .routes import Route

if TYPE_CHECKING:
    from ..subscription import Subscription
    from .links import ShardLink


class _Stats:
    """What the engine reports when nobody listens (replaced by :class:`app.stats.Stats`)."""

    def on_publish_batch(self, size: int, seconds: float) -> None:
        pass

    def on_delivery(self, channel: bytes, count: int, size: int) -> None:
        pass

    def on_shed(self, reason: str, role_name: str | None, missed: int) -> None:
        pass


class Router:
    """Routes by Redis channel, and the delivery of one message to a route's subscriptions."""

    def __init__(self, stats: Any = None) -> None:
        self.stats = stats or _Stats()
        self.routes: dict[bytes, Route] = {}

    def add(self, sub: Subscription, link: ShardLink | None) -> Route:
        """Attach ``sub`` to its channel's route, created on ``link`` when it is the channel's first
        (None for the in-memory engine, which has no shards)."""
        key = sub.key.encode()
        route = self.routes.get(key)
        if route is None:
            route = self.routes[key] = Route(key, link)
        route.add(sub)
        return route

    def remove(self, sub: Subscription) -> Route | None:
        """Detach ``sub``; returns its route when that was the route's last subscription (now gone)."""
        key = sub.key.encode()
        route = self.routes.get(key)
        if route is None:
            return None
        route.remove(sub)
        if not route.empty:
            return None
        del self.routes[key]
        return route

    # ------------------------------------------------------------------ fan-out (the hot path)
    def route_message(self, link: ShardLink | None, channel: bytes, payload: bytes) -> None:
        """Deliver one Pub/Sub message (``b"<position> <json>"``) to the local subscriptions of
        ``channel``. ``link`` is the shard link it came from (None: from a history fill)."""
        route = self.routes.get(channel)
        if route is None:
            return
        if route.hold is not None and link is route.hold.source and route.held(payload):
            return
        # app.channels.split_published, inlined: the call alone cost ~8% of an unfiltered delivery
        # (~55 ns of ~660 ns per message, one subscriber, measured).
        raw_position, _, message = payload.partition(b" ")
        position = raw_position.decode()
        route.last_position = position
        parsed: Any = _UNPARSED
        for stream_filter, members in list(route.groups.items()):
            subs = members.snapshot
            if stream_filter is None:
                tail = protocol.push_tail(position, message)
                for sub in subs:
                    sub.deliver(position, message, 1, tail)
                self.stats.on_delivery(channel, len(subs), len(message))
                continue
            if parsed is _UNPARSED:
                parsed = _loads(message)
            results = stream_filter.apply(parsed)
            if not results:
                continue
            joined = b",".join([orjson.dumps(r) for r in results])
            tail = protocol.push_tail(position, joined)
            for sub in subs:
                sub.deliver(position, joined, len(results), tail)
            self.stats.on_delivery(channel, len(subs) * len(results), len(joined))
        if route.views:
            # Each distinct view once per message, however many subscribe to it (PROTOCOL §12); its
            # subscribers get the rows when the window ends (app.views).
            if parsed is _UNPARSED:
                parsed = _loads(message)
            for window, (stream_filter, _) in route.views.items():
                for item in stream_filter.apply(parsed):
                    window.add(position, item, 1)


_UNPARSED = object()


def _loads(message: bytes) -> Any:
    try:
        return orjson.loads(message)
    except orjson.JSONDecodeError:
        return None


def prepare(sub: Subscription, entries: list[tuple[str, bytes]]) -> list[tuple[str, bytes, int]]:
    """History entries as a subscription receives them: through its filter, serialised."""
    if sub.filter is None:
        return [(position, message, 1) for position, message in entries]
    prepared = []
    for position, message in entries:
        results = sub.filter.apply(_loads(message))
        if results:
            prepared.append((position, b",".join([orjson.dumps(r) for r in results]), len(results)))
    return prepared
