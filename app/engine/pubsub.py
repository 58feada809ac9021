"""One Redis Pub/Sub connection per shard per process, read by a single greenlet.

Channels are (un)subscribed in batches: requests made in the same turn of the event loop go out as one
SUBSCRIBE / UNSUBSCRIBE command, written by a short-lived greenlet (never from a hub callback, where a full
socket buffer could not be waited on). A watchdog PINGs the connection every ``probe_interval``; one that
stays silent for 2.5 intervals (a frozen node, a pulled cable: the TCP connection looks open) is torn down
and rebuilt, and every wanted channel is subscribed again. The reader never blocks on a client: the
``on_message`` callback only routes and enqueues.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event
from gevent.lock import Semaphore

from ..resp import RedisAddress, RedisUnavailable, ReplyError, RespConnection, encode_command
from .publisher import OutageLog

log = logging.getLogger(__name__)

# (channel, payload, the ShardSubscriber it came from): the source tells the engine which shard spoke,
# which matters while a channel moves between shards or catches up after a reconnect.
OnMessage = Callable[[bytes, bytes, Any], None]
OnChannelEvent = Callable[[bytes], None]
OnShardEvent = Callable[[], None]

SILENCE_PROBES = 2.5  # probes without a word from Redis before the connection counts as dead


class ShardSubscriber:
    def __init__(
        self,
        name: str,
        address: RedisAddress,
        on_message: OnMessage,
        on_subscribed: OnChannelEvent | None = None,
        on_down: OnShardEvent | None = None,
        probe_interval: float = 5.0,
    ) -> None:
        self.name = name
        self.address = address
        self.on_message = on_message
        self.on_subscribed = on_subscribed  # a channel became live (first time or after a reconnect)
        self.on_down = on_down  # the connection is gone: live delivery stopped for all its channels
        self.probe_interval = probe_interval
        self.on_batch_end: Callable[[], None] | None = None  # after each read's messages were routed
        self.connected = False
        self.failing = False  # the last connection attempt failed or the connection was lost
        self._conn: RespConnection | None = None
        self._wanted: dict[bytes, Event] = {}  # channel → set once Redis confirmed it on this connection
        self._confirmed: set[bytes] = set()
        self._unsubscribing: set[bytes] = set()
        self._pending_subscribe: set[bytes] = set()
        self._pending_unsubscribe: set[bytes] = set()
        self._flush_scheduled = False
        self._send_lock = Semaphore()  # one writer at a time: batched (UN)SUBSCRIBE and the probe PING
        self._last_heard = time.monotonic()
        self._greenlets: list[gevent.Greenlet] = []
        self._stopping = False

    # ------------------------------------------------------------------ API
    def start(self) -> None:
        self._greenlets = [gevent.spawn(self._run), gevent.spawn(self._watchdog)]

    def stop(self) -> None:
        self._stopping = True
        gevent.killall(self._greenlets, block=False)
        if self._conn is not None:
            self._conn.close()

    @property
    def channels(self) -> set[bytes]:
        return set(self._wanted)

    def subscribe(self, channel: bytes) -> Event:
        """Want ``channel``; the returned event is set once Redis confirms the subscription."""
        ready = self._wanted.get(channel)
        if ready is not None:
            return ready
        ready = self._wanted[channel] = Event()
        self._pending_unsubscribe.discard(channel)
        if channel in self._confirmed and channel not in self._unsubscribing:
            ready.set()
        elif channel not in self._unsubscribing:  # else: resubscribed when the unsubscribe is confirmed
            self._pending_subscribe.add(channel)
            self._schedule_flush()
        return ready

    def unsubscribe(self, channel: bytes) -> None:
        if self._wanted.pop(channel, None) is None:
            return
        self._pending_subscribe.discard(channel)
        self._pending_unsubscribe.add(channel)
        self._schedule_flush()

    # ------------------------------------------------------------------ batching
    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # A greenlet starts on the next loop turn: every request of this turn goes in one command.
            gevent.spawn(self._flush)

    def _flush(self) -> None:
        with self._send_lock:
            self._flush_scheduled = False
            conn = self._conn
            if conn is None or not self.connected:
                return  # everything wanted is subscribed again on reconnect
            data = b""
            if self._pending_unsubscribe:
                channels = list(self._pending_unsubscribe)
                self._pending_unsubscribe.clear()
                self._unsubscribing.update(channels)
                data += encode_command(b"UNSUBSCRIBE", *channels)
            if self._pending_subscribe:
                channels = list(self._pending_subscribe)
                self._pending_subscribe.clear()
                data += encode_command(b"SUBSCRIBE", *channels)
            if data:
                try:
                    conn.send(data)
                except RedisUnavailable:
                    conn.close()  # the reader notices and reconnects

    # ------------------------------------------------------------------ the reader
    def _run(self) -> None:
        delay = 0.05
        outage = OutageLog(f"shard {self.name}: pub/sub cannot connect", log)
        while not self._stopping:
            conn = RespConnection(self.address)
            try:
                with gevent.Timeout(self.probe_interval * SILENCE_PROBES, RedisUnavailable("no answer")):
                    conn.connect()
            except RedisUnavailable as exc:
                conn.close()
                self.failing = True
                outage.failed(exc)
                gevent.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            outage.recovered()
            delay = 0.05
            self._conn = conn
            self.connected = True
            self.failing = False
            self._last_heard = time.monotonic()
            self._confirmed.clear()
            self._unsubscribing.clear()
            self._pending_unsubscribe.clear()
            self._pending_subscribe = set(self._wanted)
            log.info("shard %s: pub/sub connected, subscribing %d channels", self.name, len(self._wanted))
            self._flush_scheduled = True
            gevent.spawn(self._flush)
            try:
                self._read(conn)
            except RedisUnavailable as exc:
                if not self._stopping:
                    log.warning("shard %s: pub/sub connection lost: %s", self.name, exc)
            except Exception:
                # A bug must cost a reconnect, never the shard's only reader.
                log.exception("shard %s: pub/sub reader failed; reconnecting", self.name)
                gevent.sleep(delay)
            finally:
                self.connected = False
                self.failing = True
                self._conn = None
                conn.close()
                for ready in self._wanted.values():
                    ready.clear()
                if self.on_down is not None and not self._stopping:
                    self.on_down()

    def _read(self, conn: RespConnection) -> None:
        on_message = self.on_message
        while True:
            replies = conn.read_available()
            self._last_heard = time.monotonic()
            for reply in replies:
                if isinstance(reply, ReplyError):
                    # e.g. -LOADING from a node still reading its data after a restart: start over.
                    raise RedisUnavailable(f"error reply on the pub/sub connection: {reply}")
                kind = reply[0]
                if kind == b"message":
                    try:
                        on_message(reply[1], reply[2], self)
                    except Exception:
                        log.exception("shard %s: routing a message failed", self.name)
                elif kind == b"subscribe":
                    self._on_subscribe_confirmed(reply[1])
                elif kind == b"unsubscribe":
                    self._on_unsubscribe_confirmed(reply[1])
                # b"pong" answers the watchdog: hearing it is all that matters.
            if self.on_batch_end is not None:
                self.on_batch_end()  # what this read produced goes out now, not after other greenlets

    def _on_subscribe_confirmed(self, channel: bytes) -> None:
        self._confirmed.add(channel)
        ready = self._wanted.get(channel)
        if ready is None:
            if channel not in self._pending_unsubscribe:
                self._pending_unsubscribe.add(channel)  # unwanted while the SUBSCRIBE was on its way
                self._schedule_flush()
            return
        ready.set()
        if self.on_subscribed is not None:
            try:
                self.on_subscribed(channel)
            except Exception:
                log.exception("shard %s: on_subscribed failed", self.name)

    def _on_unsubscribe_confirmed(self, channel: bytes | None) -> None:
        if channel is None:
            return
        self._confirmed.discard(channel)
        self._unsubscribing.discard(channel)
        if channel in self._wanted:  # wanted again while the UNSUBSCRIBE was on its way
            self._pending_subscribe.add(channel)
            self._schedule_flush()

    def _watchdog(self) -> None:
        """A silently dead connection (a cable pulled, a frozen node) is noticed by its silence."""
        while not self._stopping:
            gevent.sleep(self.probe_interval)
            conn = self._conn
            if conn is None or not self.connected:
                continue
            if time.monotonic() - self._last_heard > SILENCE_PROBES * self.probe_interval:
                log.warning("shard %s: pub/sub silent for too long; reconnecting", self.name)
                conn.close()
                continue
            # A (UN)SUBSCRIBE stuck on a frozen node holds the lock: skip this probe, the silence check
            # of the next round closes the connection, which also frees the stuck writer.
            if not self._send_lock.acquire(timeout=self.probe_interval / 2):
                continue
            try:
                conn.send(encode_command(b"PING"))
            except RedisUnavailable:
                conn.close()
            finally:
                self._send_lock.release()
