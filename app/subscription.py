"""One client subscription: batching, time windows, push ids, positions, and the history/live switch-over.

The engine hands every subscription the messages of its channel already filtered (once per distinct
filter) and serialised (once per message); a subscription only adds its own push counter and id, so the
per-subscriber cost of a delivery is a few byte concatenations.

With ``period`` (PROTOCOL §11) the subscription feeds its own private window (:mod:`app.windows`) instead
of pushing, and pushes each window's messages when the process's window scheduler ends it. ``period`` wins
over ``batch_size``: one push per window, however many messages it holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import gevent
import orjson

from . import codec, protocol
from .engine.merge import merge
from .positions import START, Position, parse_position
from .protocol import ErrorCode
from .views import DEFAULT_PERIOD, ViewReducer, view_key
from .windows import ListReducer, Window, WindowBudget, WindowResult, WindowScheduler, process_scheduler

if TYPE_CHECKING:
    from .stream_sql import StreamFilter


class Sink(Protocol):
    """Where a subscription's pushes go: the client connection."""

    def send_payload(self, payload: bytes) -> None: ...

    def send_push(self, counter: int, subscription_part: bytes, tail: bytes) -> None: ...


class _Detached:
    """The sink of a subscription removed while messages may still be routed to it (out of sync, PROTOCOL
    §7): they go nowhere until the engine lets go of it."""

    tracks_pushes = False

    def send_payload(self, payload: bytes) -> None:
        pass

    def send_push(self, counter: int, subscription_part: bytes, tail: bytes) -> None:
        pass


DETACHED = _Detached()


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
        "_tracked",
        "_window",
        "batch_flush_interval",
        "batch_size",
        "channel",
        "counter",
        "delivered",
        "fast_forward",
        "filter",
        "key",
        "period",
        "position",
        "queued",
        "queued_epoch",
        "reported",
        "resume_after",
        "shared_window",
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
        period: int | None = None,
        window_budget: WindowBudget | None = None,
        scheduler: WindowScheduler | None = None,
        max_groups: int = 1000,
        fast_forward: bool = False,
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
        self.period = period
        # A private window (nobody shares a plain period's messages); ``window_budget`` bounds what the
        # windows of this subscription's connection buffer together.
        self._window: Window | None = None
        # An aggregated view (PROTOCOL §12) shares its window with every subscription of the same view in
        # this process; the router feeds it (once per message), this subscription only receives.
        self.shared_window: Window | None = None
        view = stream_filter.view if stream_filter is not None else None
        if view is not None:
            self.period = period = period or DEFAULT_PERIOD
            self._window = self.shared_window = (scheduler or process_scheduler()).open(
                period,
                lambda: ViewReducer(view, max_groups),
                self.push_window,
                key=view_key(key, stream_filter.text, period, max_groups),
            )
        elif period is not None:
            self._window = (scheduler or process_scheduler()).open(
                period, ListReducer, self.push_window, budget=window_budget
            )

        # PROTOCOL §7: fast-forwarded (True) or removed as out of sync when its client falls behind.
        self.fast_forward = fast_forward
        # A sink that sheds (app.connection) is told which subscription each push is for and how many
        # messages it holds; it keeps ``queued`` (messages in pushes still queued) for ``queued_epoch``.
        self._tracked = getattr(sink, "tracks_pushes", False)
        self.queued = 0
        self.queued_epoch = -1

    # ------------------------------------------------------------------ live delivery (hot path)
    def deliver(self, position: str, messages_json: bytes, count: int, tail: bytes | None = None) -> None:
        """``count`` messages whose comma-joined JSON is ``messages_json``, at ``position``.
        ``tail`` is the shared end of the push when the caller already built it."""
        if (
            self.syncing is None
            and self.resume_after is None
            and self._window is None
            and self.batch_size == 1
            and tail is not None
        ):
            # The usual live push, _emit's first case inlined: one call less per delivery, which is what
            # a fan-out multiplies (the router hands every subscriber the tail it built once).
            self.delivered += count
            self.position = position
            if self._tracked:
                self.sink.send_push(self.counter, self._subscription_part, tail, self, count)
            else:
                self.sink.send_push(self.counter, self._subscription_part, tail)
            self.counter += 1
            return
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
        window = self._window
        if window is not None:
            window.add(position, messages_json, count)  # pushed by push_window when the window ends
            return
        self.delivered += count
        if self.batch_size == 1:
            self.position = position
            if tail is None:
                tail = self._make_tail(position, messages_json)
            if self._tracked:
                self.sink.send_push(self.counter, self._subscription_part, tail, self, count)
            else:
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
        count = self._batch_count
        self._batch = []
        self._batch_count = 0
        if self._tracked:
            self.sink.send_push(self.counter, self._subscription_part, tail, self, count)
        else:
            self.sink.send_push(self.counter, self._subscription_part, tail)
        self.counter += 1

    def push_window(self, result: WindowResult) -> None:
        """The receiver of this subscription's window: one push for the whole window (PROTOCOL §11)."""
        self.delivered += result.count
        self.position = result.position
        if result.extra:  # rare (a view over max_groups): the whole PDU, in JSON, which the sink re-encodes
            body = {"subscription_id": self.subscription_id, **result.extra, "position": result.position}
            body["messages"] = orjson.loads(b"[" + result.messages_json + b"]")
            pdu = {"action": "rtm/subscription/data", "id": self.counter, "body": body}
            self.sink.send_payload(orjson.dumps(pdu))
        elif self._tracked:  # a window's push can be shed like any other (PROTOCOL §7)
            tail = result.tail(self._make_tail)
            self.sink.send_push(self.counter, self._subscription_part, tail, self, result.count)
        else:
            self.sink.send_push(self.counter, self._subscription_part, result.tail(self._make_tail))
        self.counter += 1

    @property
    def window_budget(self) -> WindowBudget | None:
        """The byte budget its window shares with the connection's other windows (None without period)."""
        return self._window.budget if self._window is not None else None

    def flush_window(self) -> None:
        """Push the window so far now (a ``force: true`` replacement: the old subscription's messages go
        out under its counter, the new one goes on from there). Not a view's shared window: that one
        belongs to every subscriber of the view, and ends with the clock only."""
        if self._window is not None and self.shared_window is None:
            self._window.flush()

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

    def info_pdu(self, reason: str, position: str | None, missed: int | None) -> bytes:
        """The ``rtm/subscription/info`` ``fast_forward`` notice (PROTOCOL §7), with the next push id: the
        notice takes its place in the subscription's sequence of ids."""
        pdu = protocol.subscription_info(
            self.subscription_id,
            self.counter,
            "fast_forward",
            reason,
            position or self.position or START,
            missed,
        )
        self.counter += 1
        return pdu

    def out_of_sync_pdu(self, reason: str, position: str | None, missed: int) -> bytes:
        """The ``rtm/subscription/error`` ``out_of_sync`` notice (PROTOCOL §7) of a removed subscription."""
        return protocol.subscription_error(
            self.subscription_id, reason, ErrorCode.OUT_OF_SYNC, position or self.position or START, missed
        )

    def position_expired(self, asked: str, restart_at: str) -> None:
        """A resume from ``asked`` cannot be served; delivery restarts at ``restart_at`` (PROTOCOL §7):
        a ``fast_forward`` subscription is told with the info notice, any other with ``expired_position``.
        How many messages expired is not known (stream ids are not dense), so no count is claimed."""
        message = f"position {asked} is no longer available"
        if self.fast_forward:
            self.sink.send_payload(self.info_pdu(message, restart_at, None))
        else:
            self.send_error(message, ErrorCode.EXPIRED_POSITION, restart_at)

    def detach(self) -> None:
        """Removed while the engine may still route messages to it: from now on they go nowhere."""
        self.cancel()
        self.sink = DETACHED
        self._tracked = False

    def cancel(self) -> None:
        """The subscription ends: drop what is pending, stop the timer. A window's messages are dropped
        too: nothing is pushed after an unsubscribe, and the position it answers is that of the last push,
        so a resume from it gets them again."""
        if self._flush_timer is not None:
            self._flush_timer.close()
            self._flush_timer = None
        self._batch = []
        self.syncing = None
        window = self._window
        if window is not None:
            self._window = None
            window.leave(self.push_window)


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

    def deliver(self, position: str, messages_json: bytes, count: int, tail: bytes | None = None) -> None:
        Subscription.deliver(self, position, messages_json, count, None)  # None: never the JSON fast path

    def _emit(self, position: str, messages_json: bytes, count: int, tail: bytes | None) -> None:
        Subscription._emit(self, position, messages_json, count, None)


def _position_of(pending: tuple[str, bytes, int]) -> Position | None:
    return parse_position(pending[0])
