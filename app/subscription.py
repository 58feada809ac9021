"""One client subscription: batching, push ids, positions, and the history/live switch-over.

The engine hands every subscription the messages of its channel already filtered (once per distinct
filter) and serialised (once per message); a subscription only adds its own push counter and id, so the
per-subscriber cost of a delivery is a few byte concatenations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import gevent

from . import codec, protocol
from .engine.merge import merge
from .positions import START, Position, parse_position

if TYPE_CHECKING:
    from .stream_sql import StreamFilter


class Sink(Protocol):
    """Where a subscription's pushes go: the client connection."""

    def send_payload(self, payload: bytes) -> None: ...

    def send_push(self, counter: int, subscription_part: bytes, tail: bytes) -> None: ...


class Subscription:
    """A subscription of a JSON connection: its pushes are JSON."""

    # Builds the shared end of a push when the caller did not hand one over (replay, batches).
    _make_tail = staticmethod(protocol.push_tail)

    __slots__ = (
        "_batch",
        "_batch_count",
        "_batch_position",
        "_flush_timer",
        "_subscription_part",
        "batch_flush_interval",
        "batch_size",
        "channel",
        "counter",
        "delivered",
        "filter",
        "key",
        "position",
        "reported",
        "resume_after",
        "sink",
        "subscription_id",
        "syncing",
    )

    def __init__(
        self,
        sink: Sink,
        subscription_id: str,
        channel: str,
        key: str,
        stream_filter: StreamFilter | None,
        batch_size: int = 1,
        batch_flush_interval: float = 0.1,
    ) -> None:
        self.sink = sink
        self.subscription_id = subscription_id
        self.channel = channel
        self.key = key  # "<appkey>::<channel>"
        self.filter = stream_filter
        self.batch_size = batch_size
        self.batch_flush_interval = batch_flush_interval
        self.counter = 0  # the push id, 0, 1, 2... per subscription (PROTOCOL §2)
        self.delivered = 0  # messages delivered, for stats
        self.reported = 0  # of those, already added to its role's totals (app.stats_publisher)
        self.position: str | None = None  # of the last message delivered
        # While a history replay runs, live messages wait here; None when live.
        self.syncing: list[tuple[str, bytes, int]] | None = None
        # After a replay, live messages up to this position were already replayed and are skipped.
        self.resume_after: tuple[int, int] | None = None
        self._subscription_part = protocol.push_subscription_part(subscription_id)
        self._batch: list[bytes] = []
        self._batch_count = 0
        self._batch_position = ""
        self._flush_timer: Any = None

    # ------------------------------------------------------------------ live delivery (hot path)
    def deliver(self, position: str, messages_json: bytes, count: int, tail: bytes | None = None) -> None:
        """``count`` messages whose comma-joined JSON is ``messages_json``, at ``position``.
        ``tail`` is the shared end of the push when the caller already built it."""
        if self.syncing is not None:
            self.syncing.append((position, messages_json, count))
            return
        if self.resume_after is not None:
            parsed = parse_position(position)
            if parsed is not None and parsed <= self.resume_after:
                return  # already delivered by the replay: no duplicate at the switch-over
            self.resume_after = None
        self._emit(position, messages_json, count, tail)

    def _emit(self, position: str, messages_json: bytes, count: int, tail: bytes | None) -> None:
        self.delivered += count
        if self.batch_size == 1:
            self.position = position
            if tail is None:
                tail = self._make_tail(position, messages_json)
            self.sink.send_push(self.counter, self._subscription_part, tail)
            self.counter += 1
            return
        self._batch.append(messages_json)
        self._batch_count += count
        self._batch_position = position
        if self._batch_count >= self.batch_size:
            self.flush()
        elif self._flush_timer is None:
            # PROTOCOL §5: a partial batch waits at most batch_flush_interval (100 ms by default).
            self._flush_timer = gevent.get_hub().loop.timer(self.batch_flush_interval)
            self._flush_timer.start(self.flush)

    def flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.close()
            self._flush_timer = None
        if not self._batch:
            return
        self.position = self._batch_position
        tail = self._make_tail(self._batch_position, b",".join(self._batch))
        self._batch = []
        self._batch_count = 0
        self.sink.send_push(self.counter, self._subscription_part, tail)
        self.counter += 1

    # ------------------------------------------------------------------ history replay
    def begin_sync(self) -> None:
        self.syncing = []

    def replay_page(self, replayed: list[tuple[str, bytes, int]]) -> None:
        """Deliver one page of a paged replay (:mod:`app.engine.paging`); live messages keep waiting.
        ``resume_after`` remembers the newest replayed so far, for the switch-over."""
        for position, messages_json, count in replayed:
            self._emit(position, messages_json, count, None)
            self.resume_after = parse_position(position) or self.resume_after

    def finish_sync(self, replayed: list[tuple[str, bytes, int]]) -> None:
        """Deliver the replayed history (its last page, after a paged replay), then the live messages that
        arrived meanwhile, skipping those the replay already contained; from then on, live. Runs without
        yielding, so nothing slips between."""
        buffered = self.syncing or []
        self.syncing = None
        to_deliver, last = merge(replayed, buffered, _position_of, self.resume_after)
        for position, messages_json, count in to_deliver:
            self._emit(position, messages_json, count, None)
        self.resume_after = last
        if self.batch_size > 1:
            self.flush()

    def send_error(self, message: str, code: str, position: str | None) -> None:
        """Tell the client this subscription hit a problem it keeps living through (PROTOCOL §9).

        The PDU always names a position (PROTOCOL §7 MUST): ``position`` when the caller knows where
        delivery stands, else the last one this subscription delivered (its channel's tail at subscribe
        time before any message), else ``"0-0"``: a resume from there may repeat, never skip."""
        where = position or self.position or START
        self.sink.send_payload(protocol.subscription_error(self.subscription_id, message, code, where))

    def cancel(self) -> None:
        """The subscription ends: drop what is pending, stop the timer."""
        if self._flush_timer is not None:
            self._flush_timer.close()
            self._flush_timer = None
        self._batch = []
        self.syncing = None


class CborSubscription(Subscription):
    """A subscription of a CBOR connection (PROTOCOL §10): the same messages, pushed as CBOR.

    The engine hands it the JSON tail it built for the JSON subscribers; that one is ignored, and the CBOR
    tail is built by :func:`app.codec.push_tail`, once per message for all CBOR subscribers of a filter
    group. JSON subscriptions never pay for any of this."""

    __slots__ = ()
    _make_tail = staticmethod(codec.push_tail)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._subscription_part = codec.push_subscription_part(self.subscription_id)

    def _emit(self, position: str, messages_json: bytes, count: int, tail: bytes | None) -> None:
        Subscription._emit(self, position, messages_json, count, None)


def _position_of(pending: tuple[str, bytes, int]) -> Position | None:
    return parse_position(pending[0])
