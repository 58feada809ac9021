"""A shard whose master is found through Redis Sentinel (``redis+sentinel://`` URLs, :mod:`.sentinel_url`).

The link is a :class:`.links.SingleNodeLink` whose node changes: the publisher, the Pub/Sub reader and the
read client all point at the master Sentinel names, and are pointed elsewhere when it names another one.
Two greenlets keep :class:`.failover.FailoverState` current:

- the *listener* holds a Pub/Sub connection to one Sentinel, subscribed to ``+switch-master``: a failover
  is followed the moment Sentinel announces it;
- the *poller* asks ``SENTINEL GET-MASTER-ADDR-BY-NAME`` (and ``REPLICAS``, for the topology shown by
  ``/ready``, ``/metrics`` and ``shards list``): every 0.5 s while the link cannot reach its master (a
  notification may have been missed), every 5 s otherwise.

When the master moves, the reader's connection drops like any lost connection: the engine's recovery tells
each subscriber once (``rtm/subscription/error``, ``shard_unavailable``, with its position), subscribes the
channels on the new master and fills the gap from its history (:mod:`.recovery`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
import redis
from gevent.event import Event

from ..config_store import connect
from ..models import Shard
from ..resp import RedisAddress, RedisUnavailable, RespConnection, encode_command
from .backoff import OutageLog
from .failover import FailoverState, Switch, format_address, parse_master_reply, parse_rows
from .history import SCRIPTS
from .links import LINK_KINDS, LinkOptions, ShardEvents, ShardLink
from .publisher import ShardPublisher
from .pubsub import SILENCE_PROBES, ShardSubscriber
from .sentinel_url import SCHEME, Address, parse_sentinel_url

log = logging.getLogger(__name__)

ASK_TIMEOUT = 2.0  # seconds one Sentinel gets to answer before the next one is asked


class SentinelLink(ShardLink):
    def __init__(self, shard: Shard, events: ShardEvents, options: LinkOptions) -> None:
        super().__init__(shard)
        self.where = parse_sentinel_url(shard.url)
        self.state = FailoverState(self.where.master_name, self.where.sentinels)
        self._timeout = max(1.0, options.probe_interval * SILENCE_PROBES)
        # Built now (the engine reads their attributes at once) and started once a Sentinel named the
        # master: until then they point at a node nobody connects to.
        unknown = RedisAddress(self.where.node_url(self.where.sentinels[0]))
        self.publisher = ShardPublisher(
            shard.name,
            unknown,
            SCRIPTS,
            options.batch_max,
            on_batch=options.on_publish_batch,
            reply_timeout=self._timeout,
            events=events,
        )
        self.subscriber = ShardSubscriber(
            shard.name, unknown, events, self, probe_interval=options.probe_interval
        )
        self.client = connect(unknown.url, socket_timeout=self._timeout)
        self._nodes_started = False
        self._stopping = False
        self._greenlets: list[gevent.Greenlet] = []
        self._poll_now = Event()
        self._outage = OutageLog(f"shard {self.name}: no Sentinel answers", log)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._greenlets = [gevent.spawn(self._poll), gevent.spawn(self._listen)]

    def stop(self, timeout: float) -> None:
        self._stopping = True
        gevent.killall(self._greenlets, block=False)
        super().stop(timeout)

    def ping(self) -> None:
        if self.state.master is None:
            raise redis.ConnectionError(f"no Sentinel of {self.where.master_name!r} has named a master yet")
        super().ping()

    def topology(self) -> dict[str, Any]:
        state = self.state
        return {
            "kind": "sentinel",
            "master": format_address(state.master),
            "replicas": tuple(format_address(r) for r in state.replicas),
            "failovers": state.failovers,
            "last_failover": state.last_failover,
        }

    # ------------------------------------------------------------------ asking the Sentinels
    def _poll(self) -> None:
        while not self._stopping:
            self.refresh()
            self._poll_now.clear()
            self._poll_now.wait(self.state.poll_interval(self.available))

    def refresh(self) -> bool:
        """Ask the Sentinels, in order, where the master is; follow it if it moved. False when none knew."""
        for sentinel in list(self.state.sentinels):
            try:
                master, replicas = self._ask(sentinel)
            except RedisUnavailable as exc:
                log.debug("shard %s: Sentinel %s: %s", self.name, format_address(sentinel), exc)
                continue
            if master is None:
                log.warning("shard %s: Sentinel %s does not know master %r", self.name, sentinel, self.where)
                continue
            self._outage.recovered()
            self.state.answered(sentinel)
            self._apply(self.state.on_master(master, time.time()))
            self.state.on_replicas(replicas)
            return True
        self._outage.failed(RedisUnavailable(f"asked {len(self.state.sentinels)} Sentinel(s)"))
        return False

    def _ask(self, sentinel: Address) -> tuple[Address | None, list[dict[str, str]]]:
        conn = RespConnection(RedisAddress(self.where.sentinel_url(sentinel)), connect_timeout=ASK_TIMEOUT)
        name = self.where.master_name
        try:
            with gevent.Timeout(ASK_TIMEOUT, RedisUnavailable("no answer")):
                conn.connect()
                conn.send(
                    encode_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
                    + encode_command("SENTINEL", "REPLICAS", name)
                )
                master = parse_master_reply(conn.read_reply())
                rows = parse_rows(conn.read_reply())
        finally:
            conn.close()
        return master, rows

    def _listen(self) -> None:
        """``+switch-master`` from one Sentinel at a time; the next one when it goes away."""
        while not self._stopping:
            sentinel = self.state.sentinels[0]
            address = RedisAddress(self.where.sentinel_url(sentinel))
            conn = RespConnection(address, connect_timeout=ASK_TIMEOUT)
            try:
                with gevent.Timeout(ASK_TIMEOUT, RedisUnavailable("no answer")):
                    conn.connect()
                    conn.send(encode_command("SUBSCRIBE", "+switch-master"))
                while True:
                    for reply in conn.read_available():
                        if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                            self._apply(self.state.on_notification(reply[1], reply[2], time.time()))
                            self._poll_now.set()  # the replicas changed too
            except RedisUnavailable as exc:
                log.debug("shard %s: Sentinel %s notifications: %s", self.name, format_address(sentinel), exc)
                # Try another one next (the poller reorders on answers; rotate here so one dead
                # Sentinel does not hold the listener).
                sentinels = self.state.sentinels
                if len(sentinels) > 1 and sentinels[0] == sentinel:
                    sentinels.append(sentinels.pop(0))
                gevent.sleep(0.5)
            finally:
                conn.close()

    # ------------------------------------------------------------------ following the master
    def _apply(self, switch: Switch | None) -> None:
        if switch is None or self._stopping:
            return
        url = self.where.node_url(switch.new)
        address = RedisAddress(url)
        old_client, self.client = self.client, connect(url, socket_timeout=self._timeout)
        if switch.failover:
            log.warning(
                "shard %s: master of %r moved from %s to %s (failover %d)",
                self.name,
                self.where.master_name,
                format_address(switch.old),
                format_address(switch.new),
                self.state.failovers,
            )
        else:
            log.info("shard %s: master of %r is %s", self.name, self.where.master_name, address)
        if self._nodes_started:
            self.publisher.retarget(address)
            self.subscriber.retarget(address)
        else:
            self.publisher.address = self.subscriber.address = address
            self._nodes_started = True
            self.publisher.start()
            self.subscriber.start()
        old_client.close()


LINK_KINDS[SCHEME] = SentinelLink
