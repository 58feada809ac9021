"""The shards of this process: the consistent-hash ring, one link per shard, and reconfiguration.

When the shard list changes, the channels whose ring position now names another shard *move*: they are
subscribed on their new shard before this process publishes there, and stay subscribed on the old one for
:data:`MOVE_GRACE` seconds. What the new shard holds that this process has not delivered is filled in from
its history once the channel is live there (:mod:`.recovery`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import gevent
import gevent.event
import gevent.lock
import redis

from ..models import Shard
from ..shards import DEFAULT_SHARD, ShardRing
from .interface import ShardStatus
from .links import LinkOptions, ShardEvents, ShardLink, open_link
from .recovery import Recovery
from .router import Router
from .routes import Route

log = logging.getLogger(__name__)

# Seconds a moved channel stays subscribed on its old shard after this process switched: messages in
# flight there still arrive, and so do those of processes that learn about the change later (they poll
# the config version every second, should they miss its announcement).
MOVE_GRACE = 5.0

NOT_RECONNECTED = "reachable, but the broker has not reconnected to it yet"


class ShardSet:
    def __init__(
        self,
        router: Router,
        recovery: Recovery,
        events: ShardEvents,
        options: LinkOptions,
        subscribe_timeout: float = 5.0,
    ) -> None:
        self.router = router
        self.recovery = recovery
        self.events = events
        self.options = options
        self.subscribe_timeout = subscribe_timeout
        self.links: dict[str, ShardLink] = {}
        self.ring: ShardRing | None = None
        self._configuring = gevent.lock.Semaphore()

    # ------------------------------------------------------------------ the hot path's lookup
    def link_for(self, key: str) -> ShardLink:
        assert self.ring is not None, "configure() must run first"
        return self.links[self.ring.node_for(key)]

    # ------------------------------------------------------------------ reconfiguration
    def configure(self, shards: Iterable[Shard], default_url: str) -> int:
        """Use ``shards`` (or the config Redis alone when empty); returns how many local channels moved.

        Moved channels are subscribed on their new shard *before* this process starts publishing there
        (waiting at most ``subscribe_timeout``), so its own subscribers miss nothing; what other processes
        published on the new shard earlier is filled in from history once the subscription is live.
        """
        with self._configuring:  # the config watcher's two greenlets may both deliver a change
            return self._configure(shards, default_url)

    def _configure(self, shards: Iterable[Shard], default_url: str) -> int:
        wanted = {s.name: s for s in shards} or {DEFAULT_SHARD: Shard(DEFAULT_SHARD, default_url)}
        if (
            self.ring is not None
            and list(self.ring.names) == list(wanted)
            and all(self.links[name].shard == shard for name, shard in wanted.items())
        ):
            return 0
        old_links = self.links
        links: dict[str, ShardLink] = {}
        for name, shard in wanted.items():
            link = old_links.get(name)
            if link is None or link.shard != shard:  # new, or same name at a new address
                link = open_link(shard, self.events, self.options)
                link.start()
            links[name] = link
        ring = ShardRing(list(wanted))
        # Until the swap below, publishes still use the old ring, so its names must still mean the old
        # links (a shard that changed address included); names new to the ring are not used yet.
        self.links = {**links, **old_links}
        moved = self._move_routes(ring, links, wait=True)
        self.links, self.ring = links, ring
        moved += self._move_routes(ring, links, wait=False)  # routes created while we waited
        for name, link in old_links.items():
            if links.get(name) is not link:
                gevent.spawn_later(MOVE_GRACE + 1.0, link.stop, 2.0)
        if old_links:
            log.info("shard list now %s; %d local channel(s) moved", ", ".join(wanted), moved)
        return moved

    def _move_routes(self, ring: ShardRing, links: dict[str, ShardLink], wait: bool) -> int:
        routes = self.router.routes
        moving: list[tuple[Route, ShardLink, gevent.event.Event]] = []
        for route in list(routes.values()):
            link = links[ring.node_for(route.key.decode())]
            if link is route.link:
                continue
            old = route.link
            route.link = link
            ready = link.subscribe(route.key)
            # Still subscribed there (it moved back within the grace period): nothing was missed there.
            if not ready.is_set():
                route.needs_fill, route.fill_floor = True, route.move_floor()
            moving.append((route, old, ready))
        if wait and moving:
            gevent.wait([ready for _route, _old, ready in moving], timeout=self.subscribe_timeout)
        for route, old, ready in moving:
            # The old subscription stays a little: messages already in flight there still arrive.
            gevent.spawn_later(MOVE_GRACE, _release_if_unused, old, route, routes)
            if wait and not ready.is_set() and not route.down:
                self.recovery.tell_down(route)
        return len(moving)

    # ------------------------------------------------------------------ lifecycle and health
    def wait_ready(self, timeout: float) -> bool:
        return all(link.publisher.wait_connected(timeout) for link in self.links.values())

    def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(
            link.publisher.drain(max(0.0, deadline - time.monotonic())) for link in list(self.links.values())
        )

    def stop(self, timeout: float = 5.0) -> None:
        for link in self.links.values():
            link.stop(timeout)

    def statuses(self) -> list[ShardStatus]:
        return [
            ShardStatus(name, link.available, link.queued, **link.topology())
            for name, link in self.links.items()
        ]

    def ping(self, timeout: float) -> dict[str, str | None]:
        """PING every shard at once, so a black-holed shard costs one connect timeout, not one per shard."""
        links = list(self.links.items())
        probes = [gevent.spawn(_ping, link) for _name, link in links]
        gevent.joinall(probes, timeout=timeout)
        problems: dict[str, str | None] = {}
        for (name, link), probe in zip(links, probes, strict=True):
            if not probe.ready():
                probe.kill(block=False)
                problems[name] = f"no answer within {timeout:g} s"
            elif probe.value is not None:
                problems[name] = f"unreachable ({probe.value})"
            elif not link.available:
                problems[name] = NOT_RECONNECTED
            else:
                problems[name] = None
        return problems


def _ping(link: ShardLink) -> Exception | None:
    try:
        link.ping()
    except redis.RedisError as exc:
        return exc
    return None


def _release_if_unused(link: ShardLink, route: Route, routes: dict[bytes, Route]) -> None:
    """Drop a moved channel's subscription on its old shard, unless it moved back meanwhile."""
    current = routes.get(route.key)
    if current is None or current.link is not link:
        link.unsubscribe(route.key)
