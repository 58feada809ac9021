"""Shard links: this process's connections to one shard, and the events they report upward.

A link owns a pipelined publisher, a Pub/Sub reader and a redis-py client for reads, and reports what
happens on them only through :class:`ShardEvents`: a message arrived, a channel became live, the shard's
live feed stopped, a batch of replies or messages was handled. It never calls into the engine otherwise.

A shard *kind* is one subclass of :class:`ShardLink`, chosen by the scheme of the shard's URL in
:data:`LINK_KINDS`: :class:`SingleNodeLink` (one Redis node at a ``redis://``, ``rediss://`` or
``unix://`` URL) and :class:`.cluster_link.ClusterLink` (a Redis Cluster at a ``redis+cluster://`` URL, whose
nodes report some channels down or moving with ``on_channels_down``/``on_channels_moving``). Another kind
(Sentinel) is a new class registered there, with the same attributes; nothing else in the engine changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import redis

from ..config_store import connect
from ..models import Shard
from ..resp import RedisAddress
from .history import SCRIPTS
from .publisher import ShardPublisher
from .pubsub import SILENCE_PROBES, ShardSubscriber

if TYPE_CHECKING:
    from gevent.event import Event


class ShardEvents(Protocol):
    """What a link reports. Each runs in the link's reader or publisher greenlet, and must not block."""

    def on_message(self, link: ShardLink, channel: bytes, payload: bytes) -> None:
        """A Pub/Sub message (``b"<position> <json>"``) of ``channel`` arrived on ``link`` (the hot path)."""

    def on_live(self, link: ShardLink, channel: bytes) -> None:
        """Redis confirmed ``channel``'s subscription: what follows on ``link`` is its live feed."""

    def on_down(self, link: ShardLink) -> None:
        """``link``'s Pub/Sub connection is gone: live delivery stopped for all its channels."""

    def on_channels_down(self, link: ShardLink, channels: Iterable[bytes]) -> None:
        """Live delivery stopped for these of ``link``'s channels only (one node of a cluster shard)."""

    def on_channels_moving(self, link: ShardLink, channels: Iterable[bytes]) -> None:
        """``link`` moves these channels' live feed to another of its nodes: fill in once live again."""

    def on_batch_end(self) -> None:
        """A read of Pub/Sub messages, or a batch of publish replies, was handled: flush the clients."""


@dataclass(frozen=True)
class LinkOptions:
    """What every link of an engine is built with."""

    batch_max: int = 2000  # most publishes in one pipelined batch
    probe_interval: float = 5.0  # seconds between liveness probes; silence for 2.5 of them is an outage
    on_publish_batch: Callable[[int, float], None] | None = None  # (batch size, seconds on the wire)


class ShardLink:
    """One shard as this process sees it. Two links are never shared between shards, even with the same
    name: a shard that changes address gets a new link (and its channels move to it).

    A subclass sets ``publisher`` (submit, shas, available, queued, drain, wait_connected, stop),
    ``subscriber`` (subscribe, unsubscribe, connected, failing, start, stop) and ``client`` (redis-py, for
    history reads and key/value)."""

    publisher: ShardPublisher
    subscriber: ShardSubscriber
    client: redis.Redis

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.name = shard.name

    def start(self) -> None:
        self.publisher.start()
        self.subscriber.start()

    def stop(self, timeout: float) -> None:
        self.publisher.stop(timeout)
        self.subscriber.stop()
        self.client.close()

    def subscribe(self, channel: bytes) -> Event:
        """Want ``channel`` live; the event is set once it is (``on_live`` reports it too)."""
        return self.subscriber.subscribe(channel)

    def unsubscribe(self, channel: bytes) -> None:
        self.subscriber.unsubscribe(channel)

    def ping(self) -> None:
        """One round trip to the shard; raises redis.RedisError when it does not answer."""
        self.client.ping()

    @property
    def available(self) -> bool:
        """Publisher and Pub/Sub reader both connected."""
        return self.publisher.available and self.subscriber.connected

    @property
    def known_down(self) -> bool:
        """The last attempt to reach the shard failed (as opposed to: still connecting)."""
        return self.subscriber.failing and not self.subscriber.connected

    @property
    def queued(self) -> int:
        """Publishes handed to the shard and not answered yet."""
        return self.publisher.queued

    def topology(self) -> dict[str, Any]:
        """Where the shard's data lives, for /ready, /metrics and the panel: ``kind``, ``master``
        (host:port), ``replicas``, ``failovers`` and ``last_failover`` (Unix time, or None)."""
        address = self.publisher.address
        where = address.path if address.scheme == "unix" else f"{address.host}:{address.port}"
        return {"kind": "single", "master": where, "replicas": (), "failovers": 0, "last_failover": None}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class SingleNodeLink(ShardLink):
    """A shard that is one Redis node, reached at its URL."""

    def __init__(self, shard: Shard, events: ShardEvents, options: LinkOptions) -> None:
        super().__init__(shard)
        address = RedisAddress(shard.url)
        probe = options.probe_interval
        self.publisher = ShardPublisher(
            shard.name,
            address,
            SCRIPTS,
            options.batch_max,
            on_batch=options.on_publish_batch,
            reply_timeout=probe * SILENCE_PROBES,
            events=events,
        )
        self.subscriber = ShardSubscriber(shard.name, address, events, self, probe_interval=probe)
        # History reads, key/value: off the hot path, so redis-py with its timeouts is fine here.
        self.client = connect(shard.url, socket_timeout=max(1.0, probe * SILENCE_PROBES))


LinkKind = Callable[[Shard, ShardEvents, LinkOptions], ShardLink]

# URL scheme → the class that links to such a shard.
LINK_KINDS: dict[str, LinkKind] = {
    "redis": SingleNodeLink,
    "rediss": SingleNodeLink,
    "unix": SingleNodeLink,
}


def _register_cluster_kind() -> None:
    # Imported here: the cluster link builds on the classes above.
    from .cluster_link import ClusterLink

    LINK_KINDS["redis+cluster"] = ClusterLink


_register_cluster_kind()


def open_link(shard: Shard, events: ShardEvents, options: LinkOptions) -> ShardLink:
    """A link of the kind ``shard.url`` names (not started). Raises ValueError for an unknown scheme."""
    scheme = urlsplit(shard.url).scheme
    kind = LINK_KINDS.get(scheme)
    if kind is None:
        raise ValueError(f"shard {shard.name}: unsupported URL scheme {scheme!r}")
    return kind(shard, events, options)


# Shard kinds in modules of their own register themselves in LINK_KINDS when imported (after the names
# above exist, which they import).
from . import sentinel_link  # noqa: E402, F401  (redis+sentinel://)
