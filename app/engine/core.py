"""The engine: shards, routing, fan-out and history, between connections and Redis.

Per process and per shard there is one :class:`ShardPublisher` and one :class:`ShardSubscriber`; the
local routing table maps a Redis channel to the subscriptions of this process, grouped by filter so each
distinct StreamSQL filter runs once per message, and each delivered message is serialised once.

A channel's live feed can be interrupted two ways: its shard's Pub/Sub connection drops, or the shard
list changes and the channel moves to another shard. Either way, once the channel is live again, what its
shard published meanwhile is read back from the stream and delivered before anything newer (a *fill*; see
:mod:`.routes`), so subscribers see no gap and no duplicate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import gevent.event
import gevent.lock
import orjson
import redis

from .. import protocol
from ..models import Shard
from ..protocol import ErrorCode
from ..shards import DEFAULT_SHARD, ShardRing
from ..subscription import Subscription
from .errors import REPLAY_LIMIT, EngineError, shard_unavailable
from .history import HistoryPolicy, entry_at, last_entry, publish_command, resume_plan
from .interface import ShardStatus
from .links import ShardLink
from .publisher import UNAVAILABLE
from .recovery import Recovery
from .republish import Republisher
from .routes import Route

log = logging.getLogger(__name__)

# Seconds a moved channel stays subscribed on its old shard after this process switched: messages in
# flight there still arrive, and so do those of processes that learn about the change later (they poll
# the config version every second, should they miss its announcement).
MOVE_GRACE = 5.0


class _Stats:
    """What the engine reports when nobody listens (replaced by :class:`app.stats.Stats`)."""

    def on_publish_batch(self, size: int, seconds: float) -> None:
        pass

    def on_delivery(self, channel: bytes, count: int, size: int) -> None:
        pass


class Engine(Recovery):
    def __init__(
        self,
        batch_max: int = 2000,
        subscribe_timeout: float = 5.0,
        stats: Any = None,
        probe_interval: float = 5.0,
    ) -> None:
        self.batch_max = batch_max
        self.subscribe_timeout = subscribe_timeout
        self.probe_interval = probe_interval
        self.stats = stats or _Stats()
        self.links: dict[str, ShardLink] = {}
        self.ring: ShardRing | None = None
        self.routes: dict[bytes, Route] = {}
        self.on_moved: Callable[[int], None] | None = None
        self.republisher = Republisher(self)
        self._configuring = gevent.lock.Semaphore()
        self._tail_reads: dict[bytes, gevent.event.AsyncResult] = {}
        # Called after each batch of Redis replies or Pub/Sub messages was handled: the broker writes what
        # it produced to the clients then (set before the first configure()).
        self.after_batch: Callable[[], None] | None = None

    # ------------------------------------------------------------------ shards
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
                link = ShardLink(shard, self)
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
        if self.on_moved is not None:
            self.on_moved(moved)
        return moved

    def _move_routes(self, ring: ShardRing, links: dict[str, ShardLink], wait: bool) -> int:
        moving: list[tuple[Route, ShardLink, gevent.event.Event]] = []
        for route in list(self.routes.values()):
            link = links[ring.node_for(route.key.decode())]
            if link is route.link:
                continue
            old = route.link
            route.link = link
            ready = link.subscriber.subscribe(route.key)
            # Still subscribed there (it moved back within the grace period): nothing was missed there.
            if not ready.is_set():
                route.needs_fill, route.fill_floor = True, route.move_floor()
            moving.append((route, old, ready))
        if wait and moving:
            gevent.wait([ready for _route, _old, ready in moving], timeout=self.subscribe_timeout)
        for route, old, ready in moving:
            # The old subscription stays a little: messages already in flight there still arrive.
            gevent.spawn_later(MOVE_GRACE, _release_if_unused, old, route, self.routes)
            if wait and not ready.is_set() and not route.down:
                self._tell_down(route)
        return len(moving)

    def link_for(self, key: str) -> ShardLink:
        assert self.ring is not None, "Engine.configure() must run first"
        return self.links[self.ring.node_for(key)]

    def wait_ready(self, timeout: float) -> bool:
        return all(link.publisher.wait_connected(timeout) for link in self.links.values())

    def stop(self, timeout: float = 5.0) -> None:
        for link in self.links.values():
            link.stop(timeout)

    def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        links = list(self.links.values())
        return all(link.publisher.drain(max(0.0, deadline - time.monotonic())) for link in links)

    def shard_statuses(self) -> list[ShardStatus]:
        return [ShardStatus(name, link.available, link.publisher.queued) for name, link in self.links.items()]

    def ping_shards(self, timeout: float) -> dict[str, str | None]:
        links = list(self.links.items())
        probes = [gevent.spawn(_ping, link.client) for _, link in links]
        gevent.joinall(probes, timeout=timeout)  # concurrently: a black-holed shard costs one timeout
        answers: dict[str, str | None] = {}
        for (name, _), probe in zip(links, probes, strict=True):
            if not probe.ready():
                probe.kill(block=False)
            answers[name] = probe.value if probe.ready() else f"no answer within {timeout:g} s"
        return answers

    # ------------------------------------------------------------------ publishing
    def publish(
        self,
        key: str,
        message: bytes,
        policy: HistoryPolicy,
        callback: Callable[[str | EngineError], None],
        deliver: bool = True,
    ) -> None:
        """Append ``message`` (JSON bytes) to the channel and deliver it; ``callback`` gets its position
        once Redis holds it, or an :class:`EngineError`."""
        link = self.link_for(key)
        publisher = link.publisher
        sha = publisher.shas.get("publish")
        if sha is None or not publisher.available:
            callback(shard_unavailable(link.name))
            return

        def on_reply(reply: Any) -> None:
            if isinstance(reply, bytes):
                callback(reply.decode())
            elif reply is UNAVAILABLE:
                callback(shard_unavailable(link.name))
            else:
                log.error("publish to %r failed in Redis: %s", key, reply)
                callback(EngineError(f"publish failed: {reply}", ErrorCode.SHARD_UNAVAILABLE))

        publisher.submit(publish_command(sha, key.encode(), message, policy, deliver), on_reply)

    def publish_and_wait(self, key: str, message: bytes, policy: HistoryPolicy, timeout: float = 5.0) -> str:
        result = gevent.event.AsyncResult()
        self.publish(key, message, policy, result.set)
        try:
            outcome = result.get(timeout=timeout)
        except gevent.Timeout:
            raise shard_unavailable(self.link_for(key).name) from None
        if isinstance(outcome, EngineError):
            raise outcome
        return outcome

    # ------------------------------------------------------------------ fan-out (the hot path)
    def route_message(self, channel: bytes, payload: bytes, source: Any = None) -> None:
        """Deliver one Pub/Sub message (``b"<position> <json>"``) to the local subscriptions of
        ``channel``. ``source`` is the ShardSubscriber it came from (None: from a history fill)."""
        route = self.routes.get(channel)
        if route is None:
            return
        if route.hold is not None and source is route.hold.source and route.held(payload):
            return
        raw_position, _, message = payload.partition(b" ")
        position = raw_position.decode()
        route.last_position = position
        parsed: Any = _UNPARSED
        for stream_filter, subs in route.groups.items():
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

    # ------------------------------------------------------------------ subscriptions
    def subscribe(self, sub: Subscription, replay: bool) -> str:
        """Attach ``sub`` to its channel and wait until Redis delivers that channel live; returns the
        channel's tail position. With ``replay``, live messages are held until :meth:`replay` runs."""
        key = sub.key.encode()
        route = self.routes.get(key)
        link = route.link if route is not None else self.link_for(sub.key)
        if link.known_down:  # fail now rather than after subscribe_timeout
            raise shard_unavailable(link.name)
        if route is None:
            route = self.routes[key] = Route(key, link)
        if replay:
            sub.begin_sync()
        route.add(sub)
        link = route.link
        ready = link.subscriber.subscribe(key)
        if not ready.wait(self.subscribe_timeout):
            self.unsubscribe(sub)
            raise shard_unavailable(link.name)
        try:
            tail = self._tail(link, key)
        except redis.RedisError:
            self.unsubscribe(sub)
            raise shard_unavailable(link.name) from None
        if route.last_position is None:
            route.last_position = tail
        return tail

    def _tail(self, link: ShardLink, key: bytes) -> str:
        """The channel's newest position, read after its subscription is live. Subscribes that arrive while
        a read for the same channel is in flight share it: a storm of a thousand subscribers to one channel
        costs one round trip, not a thousand (any answer read after the subscription went live is a
        gap-free resume point)."""
        pending = self._tail_reads.get(key)
        if pending is None:
            pending = self._tail_reads[key] = gevent.event.AsyncResult()
            try:
                last = last_entry(link.client, key.decode())
                pending.set(last[0] if last else "0-0")
            except redis.RedisError as exc:
                pending.set_exception(exc)
            finally:
                del self._tail_reads[key]
        return pending.get()

    def replay(self, sub: Subscription, position: str, policy: HistoryPolicy) -> None:
        """Send ``sub`` what follows ``position``, then switch it to live with no gap and no duplicate."""
        route = self.routes.get(sub.key.encode())
        link = route.link if route is not None else self.link_for(sub.key)
        try:
            entries, expired_at = resume_plan(link.client, sub.key, position, policy, REPLAY_LIMIT)
        except redis.RedisError:
            sub.finish_sync([])
            self._notify(
                sub, "shard unavailable: history could not be read", ErrorCode.SHARD_UNAVAILABLE, position
            )
            return
        if expired_at is not None:
            self._notify(
                sub, f"position {position} is no longer available", ErrorCode.EXPIRED_POSITION, expired_at
            )
        sub.finish_sync(_prepare(sub, entries))

    def unsubscribe(self, sub: Subscription) -> None:
        sub.cancel()
        key = sub.key.encode()
        route = self.routes.get(key)
        if route is None:
            return
        route.remove(sub)
        if not route.groups:
            del self.routes[key]
            route.link.subscriber.unsubscribe(key)

    # ------------------------------------------------------------------ key/value
    def read(self, key: str, position: str | None = None) -> tuple[bytes | None, str | None]:
        link = self.link_for(key)
        try:
            entry = entry_at(link.client, key, position) if position else last_entry(link.client, key)
        except redis.RedisError:
            raise shard_unavailable(link.name) from None
        return (entry[1], entry[0]) if entry else (None, None)

    def delete(self, key: str) -> None:
        link = self.link_for(key)
        try:
            link.client.delete(key)
        except redis.RedisError:
            raise shard_unavailable(link.name) from None


_UNPARSED = object()


def _ping(client: redis.Redis) -> str | None:
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"unreachable ({exc})"
    return None


def _loads(message: bytes) -> Any:
    try:
        return orjson.loads(message)
    except orjson.JSONDecodeError:
        return None


def _prepare(sub: Subscription, entries: list[tuple[str, bytes]]) -> list[tuple[str, bytes, int]]:
    """History entries as a subscription receives them: through its filter, serialised."""
    if sub.filter is None:
        return [(position, message, 1) for position, message in entries]
    prepared = []
    for position, message in entries:
        results = sub.filter.apply(_loads(message))
        if results:
            prepared.append((position, b",".join([orjson.dumps(r) for r in results]), len(results)))
    return prepared


def _release_if_unused(link: ShardLink, route: Route, routes: dict[bytes, Route]) -> None:
    """Drop a moved channel's subscription on its old shard, unless it moved back meanwhile."""
    current = routes.get(route.key)
    if current is None or current.link is not link:
        link.subscriber.unsubscribe(route.key)


__all__ = ["DEFAULT_SHARD", "REPLAY_LIMIT", "Engine", "Route", "ShardLink"]
