"""The Redis engine: shards, routing, fan-out and history, between connections and Redis.

It implements :class:`.interface.EngineAPI` by composing four parts, each with one job:

- :class:`.shardset.ShardSet`: the ring, one link per shard (:mod:`.links`), reconfiguration;
- :class:`.router.Router`: the local routing table and the fan-out of each live message;
- :class:`.recovery.Recovery`: what happens to routes whose live feed stopped or came back (fills);
- this class: the publish and subscribe requests, and the history reads they need.

The links report upward through one :class:`_LinkEvents`, whose attributes are the bound methods of the
parts that handle them: a Pub/Sub message goes from the reader's loop straight to
:meth:`.router.Router.route_message`, with no call in between.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import redis

from ..models import Shard
from ..protocol import ErrorCode
from ..shards import DEFAULT_SHARD
from ..shedding import EXPIRED_POSITION
from .batching import NotReplicated
from .errors import EngineError, not_replicated, shard_unavailable
from .history import (
    APP_HISTORY_FULL,
    DELETE_SCRIPT,
    REPLAY_LIMIT,
    HistoryPolicy,
    accounting_key_names,
    app_history_full,
    publish_command,
)
from .interface import PublishCallback, ShardStatus
from .links import LinkOptions, ShardLink
from .paging import PAGE_ENTRIES, replay_pages
from .publisher import UNAVAILABLE
from .recovery import Recovery
from .resume import history_window
from .router import Router
from .shardset import ShardSet
from .streams import entry_at, last_entry, resume_decision, window_start

if TYPE_CHECKING:
    from ..subscription import Subscription

log = logging.getLogger(__name__)


def _nothing() -> None:
    pass


class _LinkEvents:
    """The :class:`.links.ShardEvents` of an engine: each event is the handling part's bound method."""

    __slots__ = ("on_batch_end", "on_channels_down", "on_channels_moving", "on_down", "on_live", "on_message")

    def __init__(self, router: Router, recovery: Recovery) -> None:
        self.on_message = router.route_message
        self.on_live = recovery.on_live
        self.on_down = recovery.on_down
        self.on_channels_down = recovery.on_channels_down
        self.on_channels_moving = recovery.on_channels_moving
        self.on_batch_end: Callable[[], None] = _nothing


class Engine:
    def __init__(
        self,
        batch_max: int = 2000,
        subscribe_timeout: float = 5.0,
        stats: Any = None,
        probe_interval: float = 5.0,
        after_batch: Callable[[], None] | None = None,
    ) -> None:
        self.subscribe_timeout = subscribe_timeout
        self.router = Router(stats)
        self.stats = self.router.stats
        self.recovery = Recovery(self.router)
        self._events = _LinkEvents(self.router, self.recovery)
        options = LinkOptions(batch_max, probe_interval, self.stats.on_publish_batch)
        self.shards = ShardSet(self.router, self.recovery, self._events, options, subscribe_timeout)
        # Hoisted: publish() looks its link up with one attribute read, as when this was a method here.
        self.link_for: Callable[[str], ShardLink] = self.shards.link_for
        self._tail_reads: dict[bytes, gevent.event.AsyncResult] = {}
        if after_batch is not None:
            self.after_batch = after_batch

    @property
    def after_batch(self) -> Callable[[], None] | None:
        """Called after each batch of Redis replies or Pub/Sub messages was handled: the broker writes what
        it produced to the clients then."""
        hook = self._events.on_batch_end
        return None if hook is _nothing else hook

    @after_batch.setter
    def after_batch(self, hook: Callable[[], None] | None) -> None:
        self._events.on_batch_end = hook or _nothing

    @property
    def links(self) -> dict[str, ShardLink]:
        """The shard links by name (for the broker's health checks, until it uses shard_statuses)."""
        return self.shards.links

    # ------------------------------------------------------------------ lifecycle
    def configure(self, shards: Iterable[Shard], default_url: str) -> int:
        return self.shards.configure(shards, default_url)

    def wait_ready(self, timeout: float) -> bool:
        return self.shards.wait_ready(timeout)

    def drain(self, timeout: float) -> bool:
        return self.shards.drain(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self.shards.stop(timeout)

    def shard_statuses(self) -> list[ShardStatus]:
        return self.shards.statuses()

    def ping_shards(self, timeout: float) -> dict[str, str | None]:
        return self.shards.ping(timeout)

    # ------------------------------------------------------------------ publishing
    def publish(
        self,
        key: str,
        message: bytes,
        policy: HistoryPolicy,
        callback: PublishCallback,
        deliver: bool = True,
    ) -> None:
        """Append ``message`` (JSON bytes) to the channel and deliver it; ``callback`` gets its position
        once Redis holds it, or an :class:`EngineError`."""
        link = self.link_for(key)
        publisher = link.publisher
        shas = publisher.shas
        if not policy.budgeted:
            sha = shas.get("publish")
        elif "budget_publish" in shas:
            sha = shas["budget_publish"]
        else:
            # A shard kind without the byte-budget script (a Redis Cluster shard: the app's accounting keys
            # live in other slots than the channel) keeps the count and age limits only (README).
            policy = policy.unbudgeted()
            sha = shas.get("publish")
        if sha is None or not publisher.available:
            callback(shard_unavailable(link.name))
            return

        def on_reply(reply: Any) -> None:
            if isinstance(reply, bytes):
                callback(reply.decode())
            elif reply is UNAVAILABLE:
                callback(shard_unavailable(link.name))
            elif str(reply).startswith(APP_HISTORY_FULL):
                callback(app_history_full(str(reply)))
            elif isinstance(reply, NotReplicated):
                callback(not_replicated(link.name, reply, policy.replication_timeout_ms))
            else:
                log.error("publish to %r failed in Redis: %s", key, reply)
                callback(EngineError(f"publish failed: {reply}", ErrorCode.SHARD_UNAVAILABLE))

        command = publish_command(sha, key.encode(), message, policy, deliver)
        if policy.min_replicas:
            publisher.submit_replicated(command, on_reply, policy.min_replicas, policy.replication_timeout_ms)
        else:
            publisher.submit(command, on_reply)

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

    # ------------------------------------------------------------------ subscriptions
    def subscribe(self, sub: Subscription, replay: bool) -> str:
        """Attach ``sub`` to its channel and wait until Redis delivers that channel live; returns the
        channel's tail position. With ``replay``, live messages are held until :meth:`replay` runs."""
        key = sub.key.encode()
        route = self.router.routes.get(key)
        link = route.link if route is not None else self.link_for(sub.key)
        if link.known_down:  # fail now rather than after subscribe_timeout
            raise shard_unavailable(link.name)
        if replay:
            sub.begin_sync()
        route = self.router.add(sub, link)
        link = route.link
        ready = link.subscribe(key)
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
        """Send ``sub`` what follows ``position``, then switch it to live with no gap and no duplicate; in
        bounded pages (:mod:`.paging`), up to the tail read at subscribe (what follows came live)."""
        route = self.router.routes.get(sub.key.encode())
        link = route.link if route is not None else self.link_for(sub.key)
        upto = sub.position or "+"  # the tail the subscribe reply named
        try:
            decision = resume_decision(link.client, sub.key, position, policy)
            if decision.expired_at is not None:
                self._position_expired(sub, position, decision.expired_at)
            if decision.replay_after is None:
                sub.finish_sync([])
                return
            replay_pages(link.client, sub, decision.replay_after, False, upto, self._position_expired)
        except redis.RedisError:
            self._replay_failed(sub, position)

    def _position_expired(self, sub: Subscription, asked: str, restart_at: str) -> None:
        """What followed ``asked`` is no longer in the stream (PROTOCOL §7): the info notice for
        fast_forward, else the expired_position error; delivery goes on from ``restart_at``."""
        sub.position_expired(asked, restart_at)
        if sub.fast_forward:
            self.stats.on_shed(EXPIRED_POSITION, None, 0)

    def _replay_failed(self, sub: Subscription, position: str | None) -> None:
        where = sub.position if sub.resume_after is not None else position
        sub.finish_sync([])
        sub.send_error("shard unavailable: history could not be read", ErrorCode.SHARD_UNAVAILABLE, where)

    def replay_recent(
        self, sub: Subscription, count: int | None, age: int | None, policy: HistoryPolicy
    ) -> None:
        """Send ``sub`` the channel's last ``count`` messages not older than ``age`` seconds (PROTOCOL §5
        ``history``), then switch it to live with no gap and no duplicate; in bounded pages too."""
        window = history_window(count, age, int(time.time() * 1000), policy.replay, REPLAY_LIMIT)
        if window is None:
            sub.finish_sync([])
            return
        route = self.router.routes.get(sub.key.encode())
        link = route.link if route is not None else self.link_for(sub.key)
        upto = sub.position or "+"
        try:
            start = window_start(link.client, sub.key, window, upto, PAGE_ENTRIES)
            if start is None:
                sub.finish_sync([])
                return
            replay_pages(link.client, sub, start, True, upto, self._position_expired)
        except redis.RedisError:
            self._replay_failed(sub, None)

    def unsubscribe(self, sub: Subscription) -> None:
        sub.cancel()
        route = self.router.remove(sub)
        if route is not None:
            route.link.unsubscribe(route.key)

    # ------------------------------------------------------------------ key/value
    def read(self, key: str, position: str | None = None) -> tuple[bytes | None, str | None]:
        link = self.link_for(key)
        try:
            entry = entry_at(link.client, key, position) if position else last_entry(link.client, key)
        except redis.RedisError:
            raise shard_unavailable(link.name) from None
        return (entry[1], entry[0]) if entry else (None, None)

    def delete(self, key: str, app_key: str | None = None) -> None:
        link = self.link_for(key)
        publisher = link.publisher
        # The shard kinds with the byte-budget script keep the app's byte accounting there, which must lose
        # the channel's bytes with it (a cluster shard's publisher names its scripts in ``shas`` alone).
        scripts = getattr(publisher, "scripts", None) or publisher.shas
        try:
            if app_key and "budget_publish" in scripts:
                link.client.eval(DELETE_SCRIPT, 3, key, *accounting_key_names(app_key))
            else:
                link.client.delete(key)
        except redis.RedisError:
            raise shard_unavailable(link.name) from None


__all__ = ["DEFAULT_SHARD", "Engine"]
