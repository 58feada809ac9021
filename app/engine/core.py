"""The engine: shards, routing, fan-out and history, between connections and Redis.

Per process and per shard there is one :class:`ShardPublisher` and one :class:`ShardSubscriber`; the
local routing table maps a Redis channel to the subscriptions of this process, grouped by filter so each
distinct StreamSQL filter runs once per message, and each delivered message is serialised once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import gevent.event
import orjson
import redis

from .. import protocol
from ..config_store import connect
from ..models import Shard
from ..protocol import ErrorCode
from ..resp import RedisAddress
from ..shards import ShardRing
from ..subscription import Subscription
from .history import SCRIPTS, HistoryPolicy, entries_after, entry_at, last_entry, publish_command, resume_plan
from .publisher import UNAVAILABLE, ShardPublisher
from .pubsub import ShardSubscriber

log = logging.getLogger(__name__)

DEFAULT_SHARD = "default"
REPLAY_LIMIT = 100_000  # most entries one resume replays, whatever the retention settings say


class EngineError(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def shard_unavailable(name: str) -> EngineError:
    return EngineError(f"shard {name} is unavailable", ErrorCode.SHARD_UNAVAILABLE)


class ShardLink:
    """This process's connections to one shard."""

    def __init__(self, shard: Shard, engine: Engine) -> None:
        self.shard = shard
        self.name = shard.name
        address = RedisAddress(shard.url)
        self.publisher = ShardPublisher(
            shard.name, address, SCRIPTS, engine.batch_max, on_batch=engine.stats.on_publish_batch
        )
        self.subscriber = ShardSubscriber(
            shard.name,
            address,
            on_message=engine.route_message,
            on_subscribed=lambda channel: engine._on_channel_live(self, channel),
            on_down=lambda: engine._on_shard_down(self),
        )
        self.client: redis.Redis = connect(shard.url)

    def start(self) -> None:
        self.publisher.start()
        self.subscriber.start()

    def stop(self, timeout: float) -> None:
        self.publisher.stop(timeout)
        self.subscriber.stop()
        self.client.close()

    @property
    def available(self) -> bool:
        return self.publisher.available and self.subscriber.connected


class Route:
    """The local subscriptions of one Redis channel, grouped by filter."""

    __slots__ = ("down", "groups", "key", "last_position", "link")

    def __init__(self, key: bytes, link: ShardLink) -> None:
        self.key = key
        self.link = link
        # filter (None = unfiltered) → subscriptions; tuples, so fan-out iterates without copying
        self.groups: dict[Any, tuple[Subscription, ...]] = {}
        self.last_position: str | None = None
        self.down = False

    def add(self, sub: Subscription) -> None:
        self.groups[sub.filter] = (*self.groups.get(sub.filter, ()), sub)

    def remove(self, sub: Subscription) -> None:
        remaining = tuple(s for s in self.groups.get(sub.filter, ()) if s is not sub)
        if remaining:
            self.groups[sub.filter] = remaining
        else:
            self.groups.pop(sub.filter, None)

    def subscriptions(self) -> Iterable[Subscription]:
        for subs in self.groups.values():
            yield from subs


class _Stats:
    """What the engine reports when nobody listens (replaced by :class:`app.stats.Stats`)."""

    def on_publish_batch(self, size: int, seconds: float) -> None:
        pass

    def on_delivery(self, channel: bytes, count: int, size: int) -> None:
        pass


class Engine:
    def __init__(self, batch_max: int = 2000, subscribe_timeout: float = 5.0, stats: Any = None) -> None:
        self.batch_max = batch_max
        self.subscribe_timeout = subscribe_timeout
        self.stats = stats or _Stats()
        self.links: dict[str, ShardLink] = {}
        self.ring: ShardRing | None = None
        self.routes: dict[bytes, Route] = {}
        self.on_moved: Callable[[int], None] | None = None

    # ------------------------------------------------------------------ shards
    def configure(self, shards: Iterable[Shard], default_url: str) -> int:
        """Use ``shards`` (or the config Redis alone when empty); returns how many local channels moved."""
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
        self.links = links
        self.ring = ShardRing(list(wanted))
        moved = 0
        for route in self.routes.values():
            link = self.link_for(route.key.decode())
            if link is not route.link:
                old = route.link
                route.link = link
                link.subscriber.subscribe(route.key)
                # Keep the old subscription a little: messages already in flight there still arrive.
                gevent.spawn_later(2.0, _release_if_unused, old, route, self.routes)
                moved += 1
        for name, link in old_links.items():
            if links.get(name) is not link:
                gevent.spawn_later(3.0, link.stop, 2.0)
        if old_links:
            log.info("shard list now %s; %d local channel(s) moved", ", ".join(wanted), moved)
        if self.on_moved is not None:
            self.on_moved(moved)
        return moved

    def link_for(self, key: str) -> ShardLink:
        assert self.ring is not None, "Engine.configure() must run first"
        return self.links[self.ring.node_for(key)]

    def wait_ready(self, timeout: float) -> bool:
        return all(link.publisher.wait_connected(timeout) for link in self.links.values())

    def stop(self, timeout: float = 5.0) -> None:
        for link in self.links.values():
            link.stop(timeout)

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
    def route_message(self, channel: bytes, payload: bytes) -> None:
        route = self.routes.get(channel)
        if route is None:
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
        if route is None:
            route = self.routes[key] = Route(key, self.link_for(sub.key))
        if replay:
            sub.begin_sync()
        route.add(sub)
        link = route.link
        ready = link.subscriber.subscribe(key)
        if not ready.wait(self.subscribe_timeout):
            self.unsubscribe(sub)
            raise shard_unavailable(link.name)
        try:
            last = last_entry(link.client, sub.key)
        except redis.RedisError:
            self.unsubscribe(sub)
            raise shard_unavailable(link.name) from None
        tail = last[0] if last else "0-0"
        if route.last_position is None:
            route.last_position = tail
        return tail

    def replay(self, sub: Subscription, position: str, policy: HistoryPolicy) -> None:
        """Send ``sub`` what follows ``position``, then switch it to live with no gap and no duplicate."""
        link = self.link_for(sub.key)
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

    def _notify(self, sub: Subscription, message: str, code: str, position: str | None) -> None:
        sub.sink.send_payload(protocol.subscription_error(sub.subscription_id, message, code, position))

    def _on_shard_down(self, link: ShardLink) -> None:
        for route in self.routes.values():
            if route.link is link and not route.down:
                route.down = True
                for sub in route.subscriptions():
                    self._notify(
                        sub,
                        f"shard {link.name} is unavailable",
                        ErrorCode.SHARD_UNAVAILABLE,
                        route.last_position,
                    )

    def _on_channel_live(self, link: ShardLink, channel: bytes) -> None:
        route = self.routes.get(channel)
        if route is not None and route.down and route.link is link:
            route.down = False
            gevent.spawn(self._fill_gap, route)

    def _fill_gap(self, route: Route) -> None:
        """After a reconnect, replay from history what was published while the connection was down."""
        subs = [s for s in route.subscriptions() if s.syncing is None]
        for sub in subs:
            sub.begin_sync()
        entries: list[tuple[str, bytes]] = []
        if route.last_position is not None:
            try:
                entries = entries_after(
                    route.link.client, route.key.decode(), route.last_position, REPLAY_LIMIT
                )
            except redis.RedisError as exc:
                log.warning("shard %s: could not fill the gap of %r: %s", route.link.name, route.key, exc)
        if entries:
            log.info(
                "shard %s: replayed %d message(s) missed on %r", route.link.name, len(entries), route.key
            )
        for sub in subs:
            sub.finish_sync(_prepare(sub, entries))

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
