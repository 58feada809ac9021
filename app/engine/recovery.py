"""How the engine lives through interrupted live feeds: a shard's Pub/Sub connection drops, or a channel
moves to another shard.

Subscribers of an interrupted channel are told (``rtm/subscription/error``, ``shard_unavailable``) and
keep their subscription. Once the channel is live again, what its shard published meanwhile is read back
from the stream (a *fill*) and delivered before anything newer, while the shard's live messages for that
channel wait in a :class:`~.routes.Hold`: no gap, no duplicate.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import gevent
import redis

from .. import protocol
from ..positions import parse_position
from ..protocol import ErrorCode
from ..subscription import Subscription
from .errors import REPLAY_LIMIT
from .history import entries_after
from .routes import Hold, Route

if TYPE_CHECKING:
    from .links import ShardLink

log = logging.getLogger(__name__)


class Recovery:
    """Mixed into :class:`~.core.Engine`: the callbacks of its shard links, and the fills."""

    routes: dict[bytes, Route]

    def route_message(self, channel: bytes, payload: bytes, source: object = None) -> None:
        raise NotImplementedError

    def _notify(self, sub: Subscription, message: str, code: str, position: str | None) -> None:
        sub.sink.send_payload(protocol.subscription_error(sub.subscription_id, message, code, position))

    def _on_shard_down(self, link: ShardLink) -> None:
        for route in self.routes.values():
            if route.link is link:
                route.needs_fill = True  # floor: whatever was routed last when the fill starts
                if not route.down:
                    self._tell_down(route)

    def _tell_down(self, route: Route) -> None:
        route.down = True
        for sub in route.subscriptions():
            self._notify(
                sub,
                f"shard {route.link.name} is unavailable",
                ErrorCode.SHARD_UNAVAILABLE,
                route.last_position,
            )

    def _on_channel_live(self, link: ShardLink, channel: bytes) -> None:
        """Runs in the shard's reader greenlet as the SUBSCRIBE confirmation arrives, before any message
        that follows it: the hold starts exactly where the live feed does."""
        route = self.routes.get(channel)
        if route is None or route.link is not link:
            return
        route.down = False
        if route.needs_fill:
            floor = route.fill_floor or route.last_position or "0-0"
            route.needs_fill, route.fill_floor = False, None
            hold = route.hold = Hold(link.subscriber)
            gevent.spawn(self._fill, route, link, floor, hold)

    def _fill(self, route: Route, link: ShardLink, floor: str, hold: Hold) -> None:
        """Deliver what ``link`` holds after ``floor``, then the live messages held meanwhile, minus those
        the history already contained. Runs without yielding once the history is read."""
        entries: list[tuple[str, bytes]] = []
        try:
            entries = entries_after(link.client, route.key.decode(), floor, REPLAY_LIMIT)
        except redis.RedisError as exc:
            log.warning("shard %s: could not fill the gap of %r: %s", link.name, route.key, exc)
        if route.hold is not hold or self.routes.get(route.key) is not route:
            return  # superseded by a newer fill, or nobody listens any more
        last: tuple[int, int] | None = None
        for position, message in entries:
            self.route_message(route.key, position.encode() + b" " + message)
            last = parse_position(position) or last
        # Delivering never yields today; should it ever, messages held meanwhile are drained here too.
        while hold.buffer:
            held, hold.buffer = hold.buffer, []
            for payload in held:
                position = parse_position(payload.partition(b" ")[0].decode())
                if last is not None and position is not None and position <= last:
                    continue  # the history had it already
                self.route_message(route.key, payload)
                last = position or last
        hold.buffer, hold.skip_upto = None, last
        if last is None:
            route.hold = None
        if entries:
            # Counts what the history read returned, including messages whose live copy was held back.
            log.info("shard %s: %r caught up from history: %d message(s)", link.name, route.key, len(entries))
