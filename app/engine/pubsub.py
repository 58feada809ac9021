"""One Redis Pub/Sub connection per shard per process, read by a single greenlet.

Channels are (un)subscribed in batches: requests made in the same turn of the event loop go out as one
SUBSCRIBE / UNSUBSCRIBE command, written by a short-lived greenlet (never from a hub callback, where a full
socket buffer could not be waited on). What to send is decided by :class:`.pubsub_state.PubSubState`; this
module only moves bytes. A watchdog PINGs the connection every ``probe_interval``; one that stays silent
for 2.5 intervals (a frozen node, a pulled cable: the TCP connection looks open) is torn down and rebuilt,
and every wanted channel is subscribed again. The reader never blocks on a client: ``on_message`` only
routes and enqueues.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import Event
from gevent.lock import Semaphore

from ..resp import RedisAddress, RedisUnavailable, ReplyError, RespConnection, encode_command
from .backoff import Backoff, OutageLog
from .pubsub_state import PubSubState

if TYPE_CHECKING:
    from .links import ShardEvents

log = logging.getLogger(__name__)

SILENCE_PROBES = 2.5  # probes without a word from Redis before the connection counts as dead


class ShardSubscriber:
    """The Pub/Sub side of a shard link. Reports to ``events`` with ``link`` as the source: which link
    spoke matters while a channel moves between shards or catches up after a reconnect."""

    def __init__(
        self,
        name: str,
        address: RedisAddress,
        events: ShardEvents,
        link: Any,
        probe_interval: float = 5.0,
    ) -> None:
        self.name = name
        self.address = address
        self.events = events
        self.link = link
        self.probe_interval = probe_interval
        self.connected = False
        self.failing = False  # the last connection attempt failed or the connection was lost
        self.state = PubSubState()
        self._ready: dict[bytes, Event] = {}  # per wanted channel: set once Redis confirmed it
        self._conn: RespConnection | None = None
        self._flush_scheduled = False
        self._send_lock = Semaphore()  # one writer at a time: batched (UN)SUBSCRIBE and the probe PING
        self._last_heard = time.monotonic()
        self._greenlets: list[gevent.Greenlet] = []
        self._stopping = False
        self._backoff = Backoff()  # between reconnects; cut short by retarget

    # ------------------------------------------------------------------ API
    def start(self) -> None:
        self._greenlets = [gevent.spawn(self._run), gevent.spawn(self._watchdog)]

    def stop(self) -> None:
        self._stopping = True
        gevent.killall(self._greenlets, block=False)
        if self._conn is not None:
            self._conn.close()

    def retarget(self, address: RedisAddress) -> None:
        """Read from ``address`` from now on (the shard's master moved): the current connection is dropped
        (``on_down`` follows, as for any lost connection) and every wanted channel is subscribed there."""
        self.address = address
        self._backoff.retry_now()  # a wait for the old address ends: connect to the new one at once
        if self._conn is not None:
            self._conn.close()

    @property
    def channels(self) -> set[bytes]:
        return set(self.state.wanted)

    def subscribe(self, channel: bytes) -> Event:
        """Want ``channel``; the returned event is set once Redis confirms the subscription."""
        ready = self._ready.get(channel)
        if ready is not None:
            return ready
        ready = self._ready[channel] = Event()
        if self.state.want(channel):
            ready.set()
        elif self.state.has_pending:
            self._schedule_flush()
        return ready

    def unsubscribe(self, channel: bytes) -> None:
        if self._ready.pop(channel, None) is not None and self.state.unwant(channel):
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
            if conn is None or not self.connected or not self.state.has_pending:
                return  # everything wanted is subscribed again on reconnect
            unsubscribe, subscribe = self.state.take_pending()
            data = encode_command(b"UNSUBSCRIBE", *unsubscribe) if unsubscribe else b""
            if subscribe:
                data += encode_command(b"SUBSCRIBE", *subscribe)
            try:
                conn.send(data)
            except RedisUnavailable:
                conn.close()  # the reader notices and reconnects

    # ------------------------------------------------------------------ the reader
    def _run(self) -> None:
        backoff = self._backoff
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
                backoff.wait()
                continue
            outage.recovered()
            backoff.reset()
            self._conn = conn
            self.connected = True
            self.failing = False
            self._last_heard = time.monotonic()
            self.state.connected()
            log.info("shard %s: pub/sub connected, subscribing %d channels", self.name, len(self._ready))
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
                backoff.wait()
            finally:
                self.connected = False
                self.failing = True
                self._conn = None
                conn.close()
                for ready in self._ready.values():
                    ready.clear()
                if not self._stopping:
                    self.events.on_down(self.link)

    # The reply kinds of this flavour of Pub/Sub (the sharded reader of :mod:`.cluster_pubsub` has its own).
    MESSAGE, SUBSCRIBED, UNSUBSCRIBED = b"message", b"subscribe", b"unsubscribe"

    def _read(self, conn: RespConnection) -> None:
        events = self.events
        on_message = events.on_message
        link = self.link
        message, subscribed, unsubscribed = self.MESSAGE, self.SUBSCRIBED, self.UNSUBSCRIBED
        while True:
            replies = conn.read_available()
            self._last_heard = time.monotonic()
            for reply in replies:
                if isinstance(reply, ReplyError):
                    self._refused(str(reply))
                    continue
                kind = reply[0]
                if kind == message:
                    try:
                        on_message(link, reply[1], reply[2])
                    except Exception:
                        log.exception("shard %s: routing a message failed", self.name)
                elif kind == subscribed:
                    self._on_subscribe_confirmed(reply[1])
                elif kind == unsubscribed:
                    self._on_unsubscribe_reply(reply[1])
                # b"pong" answers the watchdog: hearing it is all that matters.
            self._after_read()
            events.on_batch_end()  # what this read produced goes out now, not after other greenlets

    def _refused(self, error: str) -> None:
        """An error reply on the Pub/Sub connection."""
        # e.g. -LOADING from a node still reading its data after a restart: start over.
        raise RedisUnavailable(f"error reply on the pub/sub connection: {error}")

    def _on_unsubscribe_reply(self, channel: bytes | None) -> None:
        self._on_unsubscribe_confirmed(channel)

    def _after_read(self) -> None:
        """Every reply of one read was handled (a sharded reader reports the channels it lost then)."""

    def _on_subscribe_confirmed(self, channel: bytes) -> None:
        if not self.state.subscribed(channel):
            self._schedule_flush()  # unwanted while the SUBSCRIBE was on its way
            return
        ready = self._ready.get(channel)
        if ready is not None:
            ready.set()
        try:
            self.events.on_live(self.link, channel)
        except Exception:
            log.exception("shard %s: on_live failed", self.name)

    def _on_unsubscribe_confirmed(self, channel: bytes | None) -> None:
        if channel is None:
            return
        self.state.unsubscribed(channel)
        if self.state.has_pending:  # wanted again while the UNSUBSCRIBE was on its way
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
