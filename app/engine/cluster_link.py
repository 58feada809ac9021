"""A Redis Cluster shard (``redis+cluster://``): one pipelined publisher and one sharded-Pub/Sub reader
per *master*, chosen by each channel's slot.

The ketama ring gives this shard its share of channels; the cluster spreads that share over its masters
by slot (:mod:`.cluster_slots`). Publishes keep the engine's natural batching: each master has its own
:class:`.publisher.ShardPublisher`, so one batch is one pipeline per master. Redirections:

- ``MOVED``: the slot map is patched from the reply at once (and refreshed in full in the background),
  and the publish is resent to the named node, at most ``cluster_facades.MAX_REDIRECTS`` times;
- ``ASK`` (a slot being migrated, the key already moved): that one publish goes to the target preceded by
  ``ASKING``, on a side connection per target (:class:`.cluster_ask.AskingSender`), in order;
- ``CLUSTERDOWN``/``TRYAGAIN`` (a failover in progress): the publish fails with ``shard_unavailable``.

The slot map is refreshed every ``probe_interval``, at once on a redirection or a lost node, and every
:data:`DEGRADED_REFRESH` seconds while a master is unreachable, which is how a failover is followed: the
promoted replica appears as the slots' owner, gets a publisher and a reader, the channels of those slots
are subscribed there and caught up from history (:mod:`.recovery`), and the dead master is dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import gevent
import gevent.event
import redis

from ..models import Shard
from ..redis_cluster_url import parse_cluster_url
from .cluster_ask import AskingSender
from .cluster_client import ClusterReadClient
from .cluster_facades import ClusterPublisher, ClusterSubscriber
from .cluster_pubsub import ShardedSubscriber
from .cluster_slots import Address, SlotMap, key_slot
from .cluster_topology import NO_SHARDED_PUBSUB, ClusterUnavailable, fetch_slot_map, node_address
from .history import PUBLISH_SCRIPT
from .links import LinkOptions, ShardEvents, ShardLink
from .publisher import ShardPublisher
from .pubsub import SILENCE_PROBES

log = logging.getLogger(__name__)

# The publish script with sharded Pub/Sub: SPUBLISH reaches the subscribers on the slot's own master (and
# its replicas), where PUBLISH would be broadcast over the whole cluster bus.
CLUSTER_PUBLISH_SCRIPT = PUBLISH_SCRIPT.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")
CLUSTER_SCRIPTS = {"publish": CLUSTER_PUBLISH_SCRIPT}

DEGRADED_REFRESH = 0.5  # seconds between slot map refreshes while a master is unreachable
REFRESH_SPACING = 0.1
SLOT_CACHE_LIMIT = 100_000  # at most ten refreshes a second, however many redirections ask for one


class NodeLink:
    """The publisher and the reader of one master."""

    def __init__(self, link: ClusterLink, address: Address) -> None:
        self.address = address
        name = f"{link.name}@{address[0]}:{address[1]}"
        where = node_address(link.cluster, address)
        probe = link.options.probe_interval
        self.publisher = ShardPublisher(
            name,
            where,
            CLUSTER_SCRIPTS,
            link.options.batch_max,
            on_batch=link.options.on_publish_batch,
            reply_timeout=probe * SILENCE_PROBES,
            events=link.events,
        )
        self.subscriber = ShardedSubscriber(
            name,
            where,
            _NodeEvents(link, self),
            link,
            probe_interval=probe,
            on_redirect=link.redirected,
            on_lost=link.lost_channels,
            on_refused=link.refused,
        )
        self.asking = AskingSender(name, where, CLUSTER_SCRIPTS, probe * SILENCE_PROBES)

    def start(self) -> None:
        self.publisher.start()
        self.subscriber.start()

    def stop(self, timeout: float) -> None:
        self.subscriber.stop()
        self.asking.stop()
        self.publisher.stop(timeout)

    @property
    def failing(self) -> bool:
        return self.subscriber.failing or not self.publisher.available


class _NodeEvents:
    """What one master's reader reports, seen as the cluster link's events."""

    def __init__(self, link: ClusterLink, node: NodeLink) -> None:
        self.link, self.node = link, node
        self.on_message = link.events.on_message
        self.on_batch_end = link.events.on_batch_end

    def on_live(self, _link: Any, channel: bytes) -> None:
        self.link.channel_live(self.node, channel)

    def on_down(self, _link: Any) -> None:
        self.link.node_down(self.node)


class ClusterLink(ShardLink):
    """A shard that is a Redis Cluster, reached through the seeds of its ``redis+cluster://`` URL."""

    def __init__(self, shard: Shard, events: ShardEvents, options: LinkOptions) -> None:
        super().__init__(shard)
        self.cluster = parse_cluster_url(shard.url)
        self.events = events
        self.options = options
        self.publish_script = CLUSTER_PUBLISH_SCRIPT
        self.slot_map: SlotMap | None = None
        self.nodes: dict[Address, NodeLink] = {}
        self.mapped = gevent.event.Event()  # set once a first slot map was read
        self.unreachable = False  # the last refresh found no node answering
        self.refusal: str | None = None  # why this cluster cannot carry channels (Redis < 7)
        self.last_failover: float | None = None  # time.time() a master was last replaced
        self.failovers = 0  # master replacements this process followed
        self.publisher = ClusterPublisher(self)  # type: ignore[assignment]
        self.subscriber = ClusterSubscriber(self)  # type: ignore[assignment]
        self.client = ClusterReadClient(self.cluster, socket_timeout=max(1.0, options.probe_interval * 2))  # type: ignore[assignment]
        self._slots: dict[bytes, int] = {}  # key → slot, for the hot path
        self._refresh = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._greenlet = gevent.spawn(self._refresher)

    def stop(self, timeout: float) -> None:
        self._stopping = True
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        for node in list(self.nodes.values()):
            node.stop(timeout)
        self.client.close()

    def ping(self) -> None:
        if self.refusal is not None:
            raise redis.ConnectionError(self.refusal)
        self.client.ping()

    @property
    def available(self) -> bool:
        return self.subscriber.connected and all(n.publisher.available for n in self.nodes.values())

    @property
    def known_down(self) -> bool:
        return self.unreachable or self.refusal is not None

    # ------------------------------------------------------------------ routing
    def node_for(self, key: bytes) -> NodeLink | None:
        slot_map = self.slot_map
        if slot_map is None:
            return None
        slot = self._slots.get(key)
        if slot is None:  # CRC16 in Python costs a few µs a key; a dict hit ~50 ns
            if len(self._slots) >= SLOT_CACHE_LIMIT:
                self._slots.clear()
            slot = self._slots[key] = key_slot(key)
        owner = slot_map.owners[slot]
        return self.nodes.get(owner) if owner is not None else None

    def node(self, address: Address) -> NodeLink:
        """The link to the master at ``address``, opened if new (a MOVED or ASK may name one first)."""
        node = self.nodes.get(address)
        if node is None:
            node = self.nodes[address] = NodeLink(self, address)
            node.start()
        return node

    # ------------------------------------------------------------------ what the nodes report
    def redirected(self, slot: int, address: Address) -> None:
        """A MOVED: the slot is ``address``'s now. Move its channels there and refresh the whole map."""
        if self.slot_map is not None and self.slot_map.owners[slot] != address:
            self.node(address)
            self.slot_map.move(slot, address)
            self._replace(ch for ch in self.subscriber.ready if key_slot(ch) == slot)
        self.request_refresh()

    def lost_channels(self, channels: list[bytes]) -> None:
        """A node unsubscribed these by itself (it lost their slot): fill them in once live elsewhere."""
        for channel in channels:
            ready = self.subscriber.ready.get(channel)
            if ready is not None:
                ready.clear()
        self.events.on_channels_moving(self, channels)
        self.request_refresh()

    def refused(self) -> None:
        self.request_refresh()

    def channel_live(self, node: NodeLink, channel: bytes) -> None:
        if self.subscriber.placed.get(channel) is not node:
            return  # moved on meanwhile: what the old node says no longer counts
        ready = self.subscriber.ready.get(channel)
        if ready is not None:
            ready.set()
        self.events.on_live(self, channel)

    def node_down(self, node: NodeLink) -> None:
        channels = [ch for ch, placed in self.subscriber.placed.items() if placed is node]
        for channel in channels:
            self.subscriber.ready[channel].clear()
        if channels:
            self.events.on_channels_down(self, channels)
        self.request_refresh()

    # ------------------------------------------------------------------ the slot map
    def request_refresh(self) -> None:
        self._refresh.set()

    def _refresher(self) -> None:
        while not self._stopping:
            try:
                self._refresh_once()
            except Exception:
                log.exception("shard %s: slot map refresh failed", self.name)
            degraded = self.unreachable or any(node.failing for node in self.nodes.values())
            self._refresh.wait(DEGRADED_REFRESH if degraded else self.options.probe_interval)
            self._refresh.clear()
            gevent.sleep(REFRESH_SPACING)

    def _refresh_once(self) -> None:
        known = [a for a, n in self.nodes.items() if not n.failing]
        replicas = [
            r for node in (self.slot_map.masters.values() if self.slot_map else ()) for r in node.replicas
        ]
        try:
            slot_map = fetch_slot_map(self.cluster, [*known, *replicas, *self.cluster.seeds], timeout=2.0)
        except ClusterUnavailable as exc:
            if str(exc) == NO_SHARDED_PUBSUB:
                if self.refusal is None:
                    log.error("shard %s: %s", self.name, exc)
                self.refusal = str(exc)
            elif not self.unreachable:
                log.warning("shard %s: %s", self.name, exc)
            self.unreachable = True
            return
        self.unreachable = False
        self.refusal = None
        self._apply(slot_map)
        # After every refresh, not only a changed one: a node may drop a channel of a slot it keeps (a
        # SETSLOT NODE naming the owner itself clears the slot's shard channels), and a SSUBSCRIBE refused
        # while the cluster was down is due again.
        for node in list(self.nodes.values()):
            node.subscriber.retry_unconfirmed()

    def _apply(self, slot_map: SlotMap) -> None:
        old = self.slot_map
        if old is not None and old.owners == slot_map.owners and old.masters == slot_map.masters:
            return
        for address in slot_map.masters:
            self.node(address)
        gone = [address for address in self.nodes if address not in slot_map.masters]
        if old is not None and any(old.owners[s] in gone for s in range(len(old.owners))):
            self.last_failover = time.time()
            self.failovers += 1
        self.slot_map = slot_map
        self._replace(list(self.subscriber.ready))
        for address in gone:
            log.info("shard %s: %s:%d is no longer a master", self.name, *address)
            gevent.spawn(self.nodes.pop(address).stop, 2.0)
        if old is not None:
            log.info("shard %s: slot map changed: masters %s", self.name, _masters(slot_map))
        else:
            log.info("shard %s: cluster of %d masters", self.name, len(slot_map.masters))
        self.mapped.set()

    def _replace(self, channels: Iterable[bytes]) -> None:
        moved = [channel for channel in list(channels) if self.subscriber.place(channel)]
        if moved:
            self.events.on_channels_moving(self, moved)

    def topology(self) -> dict[str, Any]:
        """What ``ShardStatus`` shows for every kind (/ready, /metrics, the panel): ``master`` lists the
        cluster's masters as this process follows them, ``replicas`` all of their replicas."""
        slot_map = self.slot_map
        masters = sorted(slot_map.masters.items()) if slot_map else []
        return {
            "kind": "cluster",
            "master": ", ".join(f"{h}:{p}" for (h, p), _ in masters) or None,
            "replicas": tuple(f"{h}:{p}" for _, master in masters for h, p in master.replicas),
            "failovers": self.failovers,
            "last_failover": self.last_failover,
        }


def _masters(slot_map: SlotMap) -> str:
    return ", ".join(f"{h}:{p}" for h, p in sorted(slot_map.masters))
