"""The two faces a Redis Cluster shard link shows the engine: its ``publisher`` and its ``subscriber``.

The engine talks to every link alike (:class:`.links.ShardLink`): it submits a publish command to
``link.publisher`` and wants channels from ``link.subscriber``. For a cluster these route to the master of
each key's slot (:mod:`.cluster_link` keeps the masters); redirections the publish replies carry are
followed here, since only here is the command still at hand.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

import gevent.event

from .batching import UNAVAILABLE, Callback
from .cluster_slots import command_key, parse_redirect

if TYPE_CHECKING:
    from .cluster_link import ClusterLink, NodeLink

MAX_REDIRECTS = 5


class ClusterPublisher:
    """The cluster link's ``publisher``: routes each publish to its slot's master."""

    def __init__(self, link: ClusterLink) -> None:
        self.link = link
        self.shas = {"publish": hashlib.sha1(link.publish_script.encode()).hexdigest().encode()}
        self.submit = self._submit

    def submit_replicated(self, command: bytes, callback: Callback, replicas: int, timeout_ms: int) -> None:
        """A publish acknowledged once ``WAIT`` saw ``replicas`` replicas of its slot's master take it
        (durability ``replicated`` applies to every shard kind): the master's publisher batches the WAIT,
        and a redirection keeps it (the WAIT must follow the write on the connection that made it)."""
        self._submit(command, callback, 0, (replicas, timeout_ms))

    def _submit(
        self, command: bytes, callback: Callback, redirects: int = 0, wait: tuple[int, int] | None = None
    ) -> None:
        key = command_key(command)
        node = self.link.node_for(key) if key is not None else None
        if node is None:
            callback(UNAVAILABLE)
            return

        def on_reply(reply: Any) -> None:
            if isinstance(reply, Exception) and reply is not UNAVAILABLE:
                error = str(reply)
                redirect = parse_redirect(error)
                if redirect is not None and redirects < MAX_REDIRECTS:
                    if redirect.ask:
                        self.link.node(redirect.address).asking.submit(command, callback, wait)
                    else:
                        self.link.redirected(redirect.slot, redirect.address)
                        self._submit(command, callback, redirects + 1, wait)
                    return
                if error.startswith(("CLUSTERDOWN", "TRYAGAIN")):
                    self.link.request_refresh()
                    callback(UNAVAILABLE)
                    return
            callback(reply)

        if wait is None:
            node.publisher.submit(command, on_reply)
        else:
            node.publisher.submit_replicated(command, on_reply, *wait)

    @property
    def available(self) -> bool:
        """Some master takes publishes; one whose master is down fails on its own (shard_unavailable)."""
        return any(node.publisher.available for node in self.link.nodes.values())

    @property
    def queued(self) -> int:
        return sum(node.publisher.queued for node in self.link.nodes.values())

    @property
    def batch_max(self) -> int:
        return self.link.options.batch_max

    def start(self) -> None:
        pass  # the link starts its nodes

    def wait_connected(self, timeout: float) -> bool:
        """The slot map is known and every master's publisher connected."""
        deadline = time.monotonic() + timeout
        if not self.link.mapped.wait(timeout):
            return False
        return all(
            node.publisher.wait_connected(max(0.0, deadline - time.monotonic()))
            for node in list(self.link.nodes.values())
        )

    def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(
            node.publisher.drain(max(0.0, deadline - time.monotonic()))
            for node in list(self.link.nodes.values())
        )

    def stop(self, timeout: float = 5.0) -> None:
        pass  # the link stops its nodes


class ClusterSubscriber:
    """The cluster link's ``subscriber``: each wanted channel on its slot's master."""

    def __init__(self, link: ClusterLink) -> None:
        self.link = link
        self.ready: dict[bytes, gevent.event.Event] = {}  # per wanted channel: set while it is live
        self.placed: dict[bytes, NodeLink] = {}  # where each wanted channel is subscribed

    def subscribe(self, channel: bytes) -> gevent.event.Event:
        ready = self.ready.get(channel)
        if ready is None:
            ready = self.ready[channel] = gevent.event.Event()
            self.place(channel)
        return ready

    def unsubscribe(self, channel: bytes) -> None:
        if self.ready.pop(channel, None) is None:
            return
        node = self.placed.pop(channel, None)
        if node is not None:
            node.subscriber.unsubscribe(channel)

    def place(self, channel: bytes) -> bool:
        """Subscribe ``channel`` on the master its slot names now; True when that moved it."""
        node = self.link.node_for(channel)
        old = self.placed.get(channel)
        if node is old:
            return False
        if old is not None:
            if old.subscriber.confirmed(channel):
                old.subscriber.unsubscribe(channel)
            else:
                old.subscriber.forget(channel)
        ready = self.ready[channel]
        ready.clear()
        if node is None:
            self.placed.pop(channel, None)
            return old is not None
        self.placed[channel] = node
        if node.subscriber.subscribe(channel).is_set():
            ready.set()
        return old is not None

    @property
    def connected(self) -> bool:
        nodes = self.link.nodes.values()
        return bool(nodes) and all(node.subscriber.connected for node in nodes)

    @property
    def failing(self) -> bool:
        return self.link.unreachable

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass
