"""Live tail: one channel's messages as this process's engine delivers them, for the admin panel.

A tail is an ordinary subscription of the engine (:meth:`EngineAPI.subscribe`, no replay), so it gets what
every subscriber of this process gets — messages published through any process arrive through Redis —
filtered by StreamSQL in the engine, and it lives through shard outages and moves like any other. Its
sink only queues what the engine hands it; the reader (the panel's SSE response, one greenlet) takes the
events out with :meth:`TailStream.receive`.

The queue is bounded: a reader that falls :data:`QUEUE_LIMIT` pushes or :data:`QUEUE_BYTES` behind (a
browser that stopped reading) ends the tail instead of growing it, so a tail holds at most 8 MiB plus
one message in memory.

With an aggregated view as filter (PROTOCOL §12) the tail is one more receiver of the process's shared
window of that view (the :class:`Subscription` joins it, ``period`` 1 unless given): each window's push
becomes one :class:`TailWindow` (its rows, the window's end, ``dropped_groups``), not a message per row.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent.event
import orjson

from . import protocol
from .channels import channel_key
from .engine.errors import EngineError
from .shards import ShardRing
from .subscription import Subscription
from .windows import window_index

if TYPE_CHECKING:
    from .engine.interface import EngineAPI
    from .models import ConfigSnapshot
    from .stream_sql import StreamFilter

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1000  # pushes waiting for the reader before the tail ends
QUEUE_BYTES = 8 << 20  # ... or bytes of them: a message may be up to max_message_size (1 MiB by default)
CONFIG_REDIS = "(config Redis)"  # the shard name shown when no shard list is set


@dataclass(frozen=True, slots=True)
class TailMessage:
    """One delivered message (after the filter: one of its results) and the position it was stored at."""

    position: str
    message: Any


@dataclass(frozen=True, slots=True)
class TailWindow:
    """One window of an aggregated view: its rows (one per group, ordered by group key), the position of
    the last message aggregated, when the window ended (seconds since the epoch), its period, and the
    messages not counted because the window was over ``max_groups`` (0 when none)."""

    position: str
    rows: list[Any]
    end: int
    period: int
    dropped_groups: int


@dataclass(frozen=True, slots=True)
class TailNotice:
    """The engine interrupted the feed (its shard went down, the channel moved); the tail goes on and what
    was published meanwhile follows once the channel is live again."""

    error: str
    code: str
    position: str | None


@dataclass(frozen=True, slots=True)
class TailEnd:
    """The tail is over; nothing follows."""

    reason: str


TailEvent = TailMessage | TailWindow | TailNotice | TailEnd


class TailUnavailable(Exception):
    """The channel's shard could not be subscribed to."""

    def __init__(self, shard: str, message: str) -> None:
        super().__init__(message)
        self.shard = shard
        self.message = message


class _Sink:
    """What the engine writes to: the bytes a WebSocket client would get, queued without parsing (the
    engine's reader greenlet calls this for every message of the channel and must not wait)."""

    __slots__ = ("stream",)

    def __init__(self, stream: TailStream) -> None:
        self.stream = stream

    def send_payload(self, payload: bytes) -> None:
        self.stream._queue_pdu(payload)

    def send_push(self, counter: int, subscription_part: bytes, tail: bytes) -> None:
        self.stream._queue_pdu(b"".join((protocol.PUSH_HEAD, str(counter).encode(), subscription_part, tail)))


class TailStream:
    """One open tail. Not shared between greenlets: one reader calls :meth:`receive`, then :meth:`close`."""

    def __init__(
        self, owner: LiveTail, sub_id: str, app_key: str, channel: str, shard: str, limit: int
    ) -> None:
        self.app_key = app_key
        self.channel = channel
        self.key = channel_key(app_key, channel)
        self.shard = shard
        self.limit = limit
        self.dropped = 0  # pushes refused once the queue was full
        self._owner = owner
        # (the PDU, when it arrived): a view's window ended at the last period boundary before its push
        self._pending: deque[tuple[bytes, float]] = deque()
        self._pending_bytes = 0
        self._arrived = gevent.event.Event()
        self._end: str | None = None
        self._closed = False
        self.subscription: Subscription | None = None
        self._sub_id = sub_id
        self.period: int | None = None  # a view's window period; None for a plain tail

    # ------------------------------------------------------------------ engine side
    def _queue_pdu(self, pdu: bytes) -> None:
        if self._end is not None:
            self.dropped += 1
            return
        if len(self._pending) >= self.limit or self._pending_bytes >= QUEUE_BYTES:
            self.dropped += 1
            self._end = f"the reader fell {len(self._pending)} messages behind"
            log.warning("live tail of %s ended: its reader fell too far behind", self.key)
        else:
            self._pending.append((pdu, time.time()))
            self._pending_bytes += len(pdu)
        self._arrived.set()

    def _finish(self, reason: str) -> None:
        if self._end is None:
            self._end = reason
        self._arrived.set()

    # ------------------------------------------------------------------ reader side
    def receive(self, timeout: float) -> list[TailEvent]:
        """What arrived, waiting up to ``timeout`` seconds for something ([] if nothing came). After the
        tail ended (too far behind, or the broker stops) the list ends with one :class:`TailEnd`."""
        if not self._pending and self._end is None:
            self._arrived.clear()
            self._arrived.wait(timeout)
        events: list[TailEvent] = []
        period = self.period
        while self._pending:
            pdu, arrived = self._pending.popleft()
            events.extend(_parse(pdu) if period is None else _parse_window(pdu, period, arrived))
        self._pending_bytes = 0
        if self._end is not None:
            events.append(TailEnd(self._end))
        return events

    def close(self) -> None:
        """Unsubscribe; idempotent. What was queued is dropped."""
        if self._closed:
            return
        self._closed = True
        self._finish("closed")
        self._pending.clear()
        self._pending_bytes = 0
        self._owner._release(self)
        if self.dropped:
            log.info("live tail of %s closed; %d message(s) were dropped", self.key, self.dropped)

    def __enter__(self) -> TailStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LiveTail:
    """Opens tails on this process's engine. ``snapshot`` returns the config the engine routes by (for the
    shard name a tail reports); under gunicorn each worker has its own, like its own engine."""

    def __init__(
        self,
        engine: EngineAPI,
        snapshot: Callable[[], ConfigSnapshot],
        queue_limit: int = QUEUE_LIMIT,
        max_groups: int = 1000,
    ) -> None:
        self.engine = engine
        self.snapshot = snapshot
        self.queue_limit = queue_limit
        self.max_groups = max_groups  # the broker's setting: a tail shares the window of clients' same view
        self.streams: set[TailStream] = set()
        self._ids = itertools.count(1)

    def shard_for(self, app_key: str, channel: str) -> str:
        """The name of the shard carrying the channel (the ring the engine uses)."""
        shards = self.snapshot().shards
        if not shards:
            return CONFIG_REDIS
        return ShardRing([s.name for s in shards]).node_for(channel_key(app_key, channel))

    def open(self, app_key: str, channel: str, stream_filter: StreamFilter | None = None) -> TailStream:
        """Subscribe to ``app_key``'s ``channel`` (through ``stream_filter``) and return once it is live;
        raises :class:`TailUnavailable` when its shard does not answer."""
        shard = self.shard_for(app_key, channel)
        sub_id = f"admin-tail-{next(self._ids)}"
        stream = TailStream(self, sub_id, app_key, channel, shard, self.queue_limit)
        sub = Subscription(
            _Sink(stream), sub_id, channel, stream.key, stream_filter, max_groups=self.max_groups
        )
        stream.subscription = sub
        if sub.shared_window is not None:
            stream.period = sub.period
        try:
            self.engine.subscribe(sub, replay=False)
        except EngineError as exc:
            raise TailUnavailable(shard, exc.message) from None
        self.streams.add(stream)
        return stream

    def _release(self, stream: TailStream) -> None:
        if stream in self.streams:
            self.streams.discard(stream)
            if stream.subscription is not None:
                self.engine.unsubscribe(stream.subscription)

    def close(self, reason: str = "the broker is shutting down") -> None:
        """End every open tail (their readers see a :class:`TailEnd` and close them)."""
        for stream in list(self.streams):
            stream._finish(reason)


def _parse(pdu: bytes) -> list[TailEvent]:
    """A push (``rtm/subscription/data``) or a subscription error, as the engine produced it."""
    try:
        document = orjson.loads(pdu)
    except orjson.JSONDecodeError:
        # Only a message that is not JSON in Redis (written around the broker) gets here: shown as text.
        head, _, rest = pdu.partition(b'","messages":[')
        position = head.partition(b'"position":"')[2].decode(errors="replace")
        return [TailMessage(position, rest.removesuffix(b"]}}").decode(errors="replace"))]
    body = document.get("body") or {}
    if document.get("action") == "rtm/subscription/data":
        return [TailMessage(body["position"], message) for message in body["messages"]]
    return [TailNotice(str(body.get("error")), str(body.get("code")), body.get("position"))]


def _parse_window(pdu: bytes, period: int, arrived: float) -> list[TailEvent]:
    """A view's push: one window of rows (a view push is always JSON built by the broker)."""
    document = orjson.loads(pdu)
    body = document.get("body") or {}
    if document.get("action") != "rtm/subscription/data":
        return [TailNotice(str(body.get("error")), str(body.get("code")), body.get("position"))]
    # Pushed within a second after its end (PROTOCOL §11): the last boundary before arrival is its end.
    end = window_index(arrived, period) * period
    return [TailWindow(body["position"], body["messages"], end, period, int(body.get("dropped_groups", 0)))]
