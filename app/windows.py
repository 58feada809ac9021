"""Time windows (PROTOCOL §11): tumbling windows aligned to the broker clock, and the one scheduler that ends
them.

Window ``k`` of a period of ``P`` seconds covers ``[k·P, (k+1)·P)`` seconds since the epoch
(:func:`window_index`, :func:`window_end`): every subscription with the same period shares the same window
boundaries, on every broker process with a synchronised clock.

The pieces, and the seam aggregated views (PROTOCOL §12) plug into:

``WindowReducer`` (a protocol) — what a window accumulates::

    add(position: str, value: V, count: int) -> int
        # one delivery of ``count`` messages at ``position``; returns the bytes of memory it retained
        # (a message list: len of the JSON; an aggregation: 0, its state being O(groups))
    take() -> WindowResult | None
        # what the window accumulated since the last take, and empty again; None when nothing was added

  ``V`` is whatever the feeder hands over: :class:`ListReducer` (plain ``period``) takes the comma-joined
  JSON of the delivery (``app.subscription`` already holds it), an aggregating reducer would take the
  decoded message the router already parsed for the filter.

``WindowResult(position, messages_json, count)`` — one window's push: ``messages_json`` the comma-joined
JSON of its ``count`` messages (rows, for a view), ``position`` that of the last message it covers.
:meth:`WindowResult.tail` builds the push tail once per encoding (JSON or CBOR) for all its receivers.

``Window`` — one reducer, its period, the receivers its results go to and, for a per-connection memory
bound, a :class:`WindowBudget`. :meth:`Window.add` feeds the reducer; a window is armed with the
scheduler only while it holds something, so an idle subscription costs the scheduler nothing.

``WindowScheduler`` — ONE per process (:func:`process_scheduler`), one greenlet and a wheel of armed windows
keyed by window end (whole seconds, as periods are whole seconds)::

    open(period, make_reducer, receiver, key=None, budget=None) -> Window
        # key None: a private window (one subscription). Any other hashable key — an aggregated view uses
        # (channel key, normalised filter text, period) — is shared: every open with that key gets the same
        # Window (and reducer), and each window's result goes to every receiver.
    close(window, receiver) -> None
        # the receiver leaves; a window without receivers is discarded (what it held is never pushed)
    run_due(now) -> int
        # end every armed window whose end is <= now (the greenlet calls it; tests call it directly)

A shared window must be fed once per message, not once per subscriber: whoever delivers a channel's
messages once per distinct filter (``app.engine.router.Router``, which groups subscriptions by filter) calls
``window.add``; its subscribers only receive. Plain ``period`` today uses private windows fed by the
subscription itself (:mod:`app.subscription`).

Memory bound: a connection's windows share one :class:`WindowBudget` (half its send-queue limit, so an
early push still fits in the queue beside what is there, and at most :data:`WINDOW_BUDGET_MAX`). Past it,
all of that connection's windows push what they hold at once (partial windows, counted in
:attr:`WindowScheduler.early_flushes`) and the rest of each window follows at its end. Nothing is dropped
here: the bytes move to the send queue, whose limit and shedding (PROTOCOL §7) handle a slow client.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any, Protocol

import gevent
from gevent.event import Event

log = logging.getLogger(__name__)

MAX_PERIOD = 3600  # PROTOCOL §5: ``period`` is 1 to 3600 seconds
# Windows ended in one go before the scheduler yields to the event loop: many subscriptions whose windows
# end on the same second must not hold up the Pub/Sub readers and the clients' writes.
YIELD_EVERY = 100
# The most the windows of one connection buffer together (below half its send-queue limit when that is
# smaller): memory per connection stays small, and an early push stays under the 1 MiB frame limit that
# common clients keep by default (Python websockets' max_size).
WINDOW_BUDGET_MAX = 1 << 20


# --------------------------------------------------------------------------- the clock (pure)
def window_index(t: float, period: int) -> int:
    """The window of ``period`` seconds holding time ``t`` (seconds since the epoch): window k covers
    ``[k·period, (k+1)·period)``, so a time exactly on a boundary opens the next window."""
    return int(t // period)


def window_end(t: float, period: int) -> int:
    """When the window holding ``t`` ends: the first instant that is no longer in it."""
    return (window_index(t, period) + 1) * period


# --------------------------------------------------------------------------- results and reducers
class WindowResult:
    """One window's push: the comma-joined JSON of ``count`` messages, ``position`` of the last one."""

    __slots__ = ("_tails", "count", "extra", "messages_json", "position")

    def __init__(self, position: str, messages_json: bytes, count: int) -> None:
        self.position = position
        self.messages_json = messages_json
        self.count = count
        # More fields of the push body, rarely set (a view's ``dropped_groups``, PROTOCOL §12): a push with
        # them is encoded whole for each receiver instead of sharing the tail.
        self.extra: dict[str, Any] | None = None
        self._tails: dict[Callable[[str, bytes], bytes], bytes] = {}

    def tail(self, make_tail: Callable[[str, bytes], bytes]) -> bytes:
        """The shared end of the push as ``make_tail`` encodes it, built once for all receivers."""
        tail = self._tails.get(make_tail)
        if tail is None:
            tail = self._tails[make_tail] = make_tail(self.position, self.messages_json)
        return tail

    def __repr__(self) -> str:
        return f"WindowResult({self.position!r}, {self.messages_json!r}, {self.count})"


class WindowReducer(Protocol):
    """What a window accumulates (see the module docstring)."""

    def add(self, position: str, value: Any, count: int) -> int: ...

    def take(self) -> WindowResult | None: ...


class ListReducer:
    """Plain ``period``: the window's messages, in arrival order, as the JSON chunks they were delivered
    as. Holds the chunks and nothing else (a list slot per delivery on top of the JSON itself)."""

    __slots__ = ("_chunks", "_count", "_position")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._count = 0
        self._position = ""

    def add(self, position: str, value: bytes, count: int) -> int:
        self._chunks.append(value)
        self._count += count
        self._position = position
        return len(value)

    def take(self) -> WindowResult | None:
        if not self._chunks:
            return None
        result = WindowResult(self._position, b",".join(self._chunks), self._count)
        self._chunks = []
        self._count = 0
        return result


class WindowBudget:
    """Bytes the windows of one connection may buffer together (``limit``); see the module docstring."""

    __slots__ = ("holding", "limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.holding: dict[Window, None] = {}  # the windows holding bytes, in the order they started to


# --------------------------------------------------------------------------- windows
Receiver = Callable[[WindowResult], None]


class Window:
    """One reducer of one period and who gets its results (built by :meth:`WindowScheduler.open`)."""

    __slots__ = (
        "__weakref__",
        "_scheduler",
        "budget",
        "closed",
        "end",
        "held",
        "key",
        "period",
        "receivers",
        "reducer",
    )

    def __init__(
        self,
        scheduler: WindowScheduler,
        period: int,
        reducer: WindowReducer,
        key: Hashable | None,
        budget: WindowBudget | None,
    ) -> None:
        self._scheduler = scheduler
        self.period = period
        self.reducer = reducer
        self.key = key
        self.budget = budget
        self.receivers: list[Receiver] = []
        self.end: int | None = None  # of the window being accumulated; None while empty (not armed)
        self.held = 0  # bytes the reducer retained since its last take
        self.closed = False

    def add(self, position: str, value: Any, count: int) -> None:
        """Feed one delivery into the window the broker clock is in now."""
        if self.closed:
            return
        now = self._scheduler.clock()
        end = self.end
        if end is None:
            self.end = self._scheduler.arm(self, now)
        elif now >= end:
            # The scheduler has not reached this window yet (it is yielding, or the loop is late): the
            # message belongs to the next window, so this one is pushed now, before it.
            self._push(self._take())
            if self.closed:
                return  # its push ended the subscription (a slow client shed it)
            self.end = self._scheduler.arm(self, now)
        retained = self.reducer.add(position, value, count)
        if retained:
            budget = self.budget
            if budget is None:
                self.held += retained
                return
            if not self.held:
                budget.holding[self] = None
            self.held += retained
            budget.used += retained
            if budget.used > budget.limit:
                self._scheduler.spill(budget)

    def flush(self) -> None:
        """Push what the window holds now (a partial window); it stays armed for the rest of it."""
        self._push(self._take())

    def fire(self, end: int) -> None:
        """The scheduler reached ``end``: push the window it ends (if this window is still on it)."""
        if self.end != end or self.closed:
            return  # a stale wheel entry: pushed early by a late message and re-armed, or closed
        self.end = None
        self._push(self._take())

    def leave(self, receiver: Receiver) -> None:
        """``receiver`` stops receiving (:meth:`WindowScheduler.close`)."""
        self._scheduler.close(self, receiver)

    def close(self) -> None:
        """Nobody receives any more: what is held is discarded, the wheel entry becomes stale."""
        self.closed = True
        self.end = None
        self.receivers = []
        self._take()

    def _take(self) -> WindowResult | None:
        result = self.reducer.take()
        if self.held:
            budget = self.budget
            if budget is not None:
                budget.used -= self.held
                budget.holding.pop(self, None)
            self.held = 0
        return result

    def _push(self, result: WindowResult | None) -> None:
        if result is None:
            return  # PROTOCOL §11: an empty window sends nothing
        # A copy: a push may end a subscription (a slow client shed), which leaves the list.
        for receiver in tuple(self.receivers):
            receiver(result)


# --------------------------------------------------------------------------- the scheduler
class WindowScheduler:
    """Ends armed windows at their end, from one greenlet (see the module docstring).

    ``clock`` is the broker clock (wall time: windows align to the epoch); tests inject their own and call
    :meth:`run_due` with ``run_greenlet=False``. Costs one heap entry and one list slot per armed window."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        yield_every: int = YIELD_EVERY,
        run_greenlet: bool = True,
    ) -> None:
        self.clock = clock
        self.yield_every = yield_every
        self._run_greenlet = run_greenlet
        self._slots: dict[int, list[Window]] = {}  # window end -> windows armed for it
        self._ends: list[int] = []  # heap of the keys of _slots
        self._shared: dict[Hashable, Window] = {}
        self._wake = Event()
        self._greenlet: gevent.Greenlet | None = None
        self.early_flushes = 0  # windows pushed early because their connection's budget was full
        self.failures = 0  # receivers that raised (logged); the scheduler carries on

    # ------------------------------------------------------------------ registration
    def open(
        self,
        period: int,
        make_reducer: Callable[[], WindowReducer],
        receiver: Receiver,
        key: Hashable | None = None,
        budget: WindowBudget | None = None,
    ) -> Window:
        """A window of ``period`` seconds delivering to ``receiver``: a new private one when ``key`` is None,
        else the shared window of ``key`` (created, with ``make_reducer()``, by its first receiver)."""
        window = self._shared.get(key) if key is not None else None
        if window is None:
            window = Window(self, period, make_reducer(), key, budget)
            if key is not None:
                self._shared[key] = window
        elif window.period != period:
            raise ValueError(f"shared window {key!r} has period {window.period}, not {period}")
        window.receivers.append(receiver)
        return window

    def close(self, window: Window, receiver: Receiver) -> None:
        """``receiver`` leaves ``window``; the last one to leave discards it."""
        try:
            window.receivers.remove(receiver)
        except ValueError:
            pass
        if window.receivers:
            return
        if window.key is not None and self._shared.get(window.key) is window:
            del self._shared[window.key]
        window.close()

    def shared(self, key: Hashable) -> Window | None:
        """The shared window of ``key``, if anyone has it open."""
        return self._shared.get(key)

    # ------------------------------------------------------------------ the wheel
    def arm(self, window: Window, now: float) -> int:
        """Put ``window`` on the wheel for the end of the window holding ``now``; returns that end."""
        end = window_end(now, window.period)
        slot = self._slots.get(end)
        if slot is None:
            slot = self._slots[end] = []
            sooner = not self._ends or end < self._ends[0]
            heapq.heappush(self._ends, end)
            self._start_or_wake(sooner)
        slot.append(window)
        return end

    def spill(self, budget: WindowBudget) -> None:
        """A connection's windows hold more than its budget: every one of them pushes what it holds."""
        for window in list(budget.holding):
            self.early_flushes += 1
            self._guarded(window.flush)

    def next_end(self) -> int | None:
        """The earliest end on the wheel (None when nothing is armed)."""
        return self._ends[0] if self._ends else None

    def run_due(self, now: float) -> int:
        """End every armed window whose end is at or before ``now``, in order of end; returns how many
        windows were reached. Yields to the event loop every ``yield_every`` windows."""
        reached = 0
        ends, slots = self._ends, self._slots
        while ends and ends[0] <= now:
            end = heapq.heappop(ends)
            for window in slots.pop(end):
                self._guarded(window.fire, end)
                reached += 1
                if reached % self.yield_every == 0:
                    gevent.sleep(0)
        return reached

    def _guarded(self, call: Callable[..., None], *args: Any) -> None:
        # One failing receiver (a bug) must not stop every other window of the process.
        try:
            call(*args)
        except Exception:
            self.failures += 1
            log.exception("a time window's push failed")

    def _start_or_wake(self, sooner: bool) -> None:
        if not self._run_greenlet:
            return
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)
        elif sooner:
            self._wake.set()

    def _run(self) -> None:
        wake = self._wake
        while True:
            wake.clear()
            if not self._ends:
                wake.wait()
                continue
            delay = self._ends[0] - self.clock()
            if delay > 0:
                wake.wait(delay)  # set early when a window ending sooner is armed
                continue
            self.run_due(self.clock())


_process_scheduler: WindowScheduler | None = None


def process_scheduler() -> WindowScheduler:
    """The window scheduler of this process (created on first use, after a gunicorn fork)."""
    global _process_scheduler
    if _process_scheduler is None:
        _process_scheduler = WindowScheduler()
    return _process_scheduler
