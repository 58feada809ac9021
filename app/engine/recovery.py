"""How the engine lives through interrupted live feeds: a shard's Pub/Sub connection drops, or a channel
moves to another shard.

Subscribers of an interrupted channel are told (``rtm/subscription/error``, ``shard_unavailable``) and
keep their subscription. Once the channel is live again, what its shard published meanwhile is read back
from the stream (a *fill*) and delivered before anything newer, while the shard's live messages for that
channel wait in a :class:`~.routes.Hold`; the two are put together by :func:`.merge.merge`: no gap, no
duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import gevent
import redis

from ..channels import split_published
from ..positions import Position, parse_position
from ..protocol import ErrorCode
from .merge import merge
from .routes import Hold, Route
from .streams import entries_after

if TYPE_CHECKING:
    from .links import ShardLink
    from .router import Router

log = logging.getLogger(__name__)

FILL_PAGE = 500  # entries per read of a fill: bounds what one fill holds, whatever the gap


class Recovery:
    """What happens to the routes of a link that went down or came back: the ``on_down`` and ``on_live``
    events of the shard links, and the fills."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.routes = router.routes

    def on_down(self, link: ShardLink) -> None:
        for route in self.routes.values():
            if route.link is link:
                route.needs_fill = True  # floor: whatever was routed last when the fill starts
                if not route.down:
                    self.tell_down(route)

    def on_channels_down(self, link: ShardLink, channels: Iterable[bytes]) -> None:
        """Like :meth:`on_down`, for some of ``link``'s channels only: one node of a Redis Cluster shard
        was lost, the channels of its slots stopped and the others did not."""
        for channel in channels:
            route = self.routes.get(channel)
            if route is not None and route.link is link:
                route.needs_fill = True
                if not route.down:
                    self.tell_down(route)

    def on_channels_moving(self, link: ShardLink, channels: Iterable[bytes]) -> None:
        """``link`` moves the live feed of ``channels`` to another of its nodes (a cluster slot changed
        owner): no outage to tell, but what is published meanwhile is filled in once they are live again.
        A route that never went live needs none: its subscribe reads the tail after that."""
        for channel in channels:
            route = self.routes.get(channel)
            if route is not None and route.link is link and route.last_position is not None:
                route.needs_fill = True

    def tell_down(self, route: Route) -> None:
        """Tell the route's subscribers its live feed stopped; they keep their subscription."""
        route.down = True
        message = f"shard {route.link.name} is unavailable"
        for sub in route.subscriptions():
            sub.send_error(message, ErrorCode.SHARD_UNAVAILABLE, route.last_position)

    def on_live(self, link: ShardLink, channel: bytes) -> None:
        """Runs in the shard's reader greenlet as the SUBSCRIBE confirmation arrives, before any message
        that follows it: the hold starts exactly where the live feed does."""
        route = self.routes.get(channel)
        if route is None or route.link is not link:
            return
        route.down = False
        if route.needs_fill:
            floor = route.fill_floor or route.last_position or "0-0"
            route.needs_fill, route.fill_floor = False, None
            hold = route.hold = Hold(link)
            gevent.spawn(self._fill, route, link, floor, hold)

    def _fill(self, route: Route, link: ShardLink, floor: str, hold: Hold) -> None:
        """Deliver what ``link`` holds after ``floor``, then the live messages held meanwhile, minus those
        the history already contained. Runs without yielding once the history is read."""
        route_message, key = self.router.route_message, route.key
        last: Position | None = None
        total = 0
        # In pages (a long outage can leave a long gap): each full page is delivered as it is read, while
        # the hold keeps the live messages; the last, short page is merged with them below.
        while True:
            entries: list[tuple[str, bytes]] = []
            try:
                entries = entries_after(link.client, route.key.decode(), floor, FILL_PAGE)
            except redis.RedisError as exc:
                log.warning("shard %s: could not fill the gap of %r: %s", link.name, route.key, exc)
            if route.hold is not hold or self.routes.get(route.key) is not route:
                return  # superseded by a newer fill, or nobody listens any more
            total += len(entries)
            replayed = [position.encode() + b" " + message for position, message in entries]
            if len(entries) < FILL_PAGE:
                break
            to_deliver, last = merge(replayed, [], _payload_position, last)
            for payload in to_deliver:
                route_message(None, key, payload)
            floor = entries[-1][0]
        # Delivering never yields today; should it ever, messages held meanwhile are merged here too.
        while True:
            buffered, hold.buffer = hold.buffer or [], []
            to_deliver, last = merge(replayed, buffered, _payload_position, last)
            for payload in to_deliver:
                route_message(None, key, payload)
            replayed = []
            if not hold.buffer:
                break
        hold.buffer, hold.skip_upto = None, last
        if last is None:
            route.hold = None
        if total:
            # Counts what the history read returned, including messages whose live copy was held back.
            log.info("shard %s: %r caught up from history: %d message(s)", link.name, route.key, total)


def _payload_position(payload: bytes) -> Position | None:
    return parse_position(split_published(payload)[0])
