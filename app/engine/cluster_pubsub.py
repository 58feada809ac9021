"""Sharded Pub/Sub (Redis ≥ 7) on one master of a Redis Cluster shard: ``SSUBSCRIBE`` and ``smessage``.

A cluster node delivers a shard channel only to clients subscribed *on the node owning its slot*, so a
cluster link keeps one :class:`ShardedSubscriber` per master. It is :class:`.pubsub.ShardSubscriber` with
the sharded commands, and three cluster rules:

- one ``SSUBSCRIBE``/``SUNSUBSCRIBE`` may name channels of a single slot only (else ``CROSSSLOT``), so a
  flush sends one command per slot, pipelined;
- a channel whose slot this node does not own is answered ``-MOVED``: the link learns the new owner from
  it and moves the channel there, instead of dropping the connection (the node is fine);
- when the node loses a slot (resharding, a failover), it unsubscribes the slot's channels itself: an
  ``sunsubscribe`` nobody asked for. The link then refreshes its slot map and moves them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..resp import RedisUnavailable, RespConnection, encode_command
from .cluster_slots import key_slot, parse_redirect
from .pubsub import ShardSubscriber

log = logging.getLogger(__name__)


def _by_slot(channels: list[bytes]) -> dict[int, list[bytes]]:
    groups: dict[int, list[bytes]] = {}
    for channel in channels:
        groups.setdefault(key_slot(channel), []).append(channel)
    return groups


def sharded_commands(unsubscribe: list[bytes], subscribe: list[bytes]) -> bytes:
    """SUNSUBSCRIBE then SSUBSCRIBE commands, one per slot."""
    data = b"".join(encode_command(b"SUNSUBSCRIBE", *group) for group in _by_slot(unsubscribe).values())
    return data + b"".join(encode_command(b"SSUBSCRIBE", *group) for group in _by_slot(subscribe).values())


class ShardedSubscriber(ShardSubscriber):
    """The Pub/Sub reader of one cluster master. ``on_redirect(slot, address)`` reports a ``MOVED``;
    ``on_lost(channels)`` reports channels the node unsubscribed by itself."""

    def __init__(
        self,
        *args: Any,
        on_redirect: Callable[[int, tuple[str, int]], None],
        on_lost: Callable[[list[bytes]], None],
        on_refused: Callable[[], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._on_redirect = on_redirect
        self._on_lost = on_lost
        self._on_refused = on_refused
        self._lost: list[bytes] = []  # channels the node dropped by itself during the read being handled

    def forget(self, channel: bytes) -> None:
        """Stop wanting ``channel`` here without telling the node: it moved to another node, and this one
        either never had it or unsubscribed it itself (an SUNSUBSCRIBE would only be answered MOVED)."""
        state = self.state
        for found in (state.wanted, state.confirmed, state.unsubscribing):
            found.discard(channel)
        state.pending_subscribe.discard(channel)
        state.pending_unsubscribe.discard(channel)
        ready = self._ready.pop(channel, None)
        if ready is not None:
            ready.clear()

    def confirmed(self, channel: bytes) -> bool:
        return channel in self.state.confirmed

    def retry_unconfirmed(self) -> None:
        """Ask again for what is wanted here and neither confirmed nor on its way (a refused SSUBSCRIBE:
        the cluster was down, or the slot had moved on)."""
        state = self.state
        missing = state.wanted - state.confirmed - state.unsubscribing - state.pending_subscribe
        if missing:
            state.pending_subscribe.update(missing)
            self._schedule_flush()

    def _flush(self) -> None:
        with self._send_lock:
            self._flush_scheduled = False
            conn = self._conn
            if conn is None or not self.connected or not self.state.has_pending:
                return
            unsubscribe, subscribe = self.state.take_pending()
            try:
                conn.send(sharded_commands(unsubscribe, subscribe))
            except RedisUnavailable:
                conn.close()

    MESSAGE, SUBSCRIBED, UNSUBSCRIBED = b"smessage", b"ssubscribe", b"sunsubscribe"

    def _read(self, conn: RespConnection) -> None:
        self._lost = []  # nothing of a connection that failed mid-read carries over to the next one
        super()._read(conn)

    def _on_unsubscribe_reply(self, channel: bytes | None) -> None:
        if channel in self.state.unsubscribing or channel not in self.state.wanted:
            self._on_unsubscribe_confirmed(channel)
        else:  # the node lost the channel's slot and dropped it by itself
            self.state.confirmed.discard(channel)
            ready = self._ready.get(channel)
            if ready is not None:
                ready.clear()
            self._lost.append(channel)

    def _after_read(self) -> None:
        if self._lost:
            lost, self._lost = self._lost, []
            self._on_lost(lost)

    def _refused(self, error: str) -> None:
        redirect = parse_redirect(error)
        if redirect is not None:
            self._on_redirect(redirect.slot, redirect.address)
        elif error.startswith(("CLUSTERDOWN", "TRYAGAIN")):
            log.info(
                "shard %s: pub/sub request refused (%s); retrying after a slot map refresh", self.name, error
            )
            self._on_refused()
        else:
            # e.g. -LOADING from a node still reading its data after a restart: start over.
            raise RedisUnavailable(f"error reply on the pub/sub connection: {error}")
