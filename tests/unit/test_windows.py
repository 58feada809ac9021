"""Time windows (PROTOCOL §11) without sockets: the clock math, the list reducer, the process scheduler
(driven by an injected clock), shared windows and the per-connection byte budget."""

from __future__ import annotations

import math
import time

import gevent
import pytest

from app import codec, protocol
from app.windows import (
    MAX_PERIOD,
    ListReducer,
    WindowBudget,
    WindowResult,
    WindowScheduler,
    window_end,
    window_index,
)

EPOCH = 1_699_999_200  # a whole number of hours since the epoch: a boundary of every period dividing 3600


class Clock:
    def __init__(self, now: float = EPOCH + 0.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Receiver:
    def __init__(self) -> None:
        self.results: list[WindowResult] = []

    def __call__(self, result: WindowResult) -> None:
        self.results.append(result)

    def messages(self) -> list[list[int]]:
        return [[int(m) for m in r.messages_json.split(b",")] for r in self.results]


def scheduler(clock: Clock, **kwargs) -> WindowScheduler:
    return WindowScheduler(clock, run_greenlet=False, **kwargs)


# --------------------------------------------------------------------------- the clock
def test_window_k_covers_k_times_p_to_k_plus_one_times_p():
    assert window_index(0.0, 1) == 0 and window_end(0.0, 1) == 1
    assert window_index(9.5, 10) == 0 and window_end(9.5, 10) == 10
    assert window_index(25.0, 10) == 2 and window_end(25.0, 10) == 30


def test_a_time_exactly_on_a_boundary_opens_the_next_window():
    for period in (1, 2, 5, 60, MAX_PERIOD):
        boundary = float(EPOCH)  # EPOCH is a multiple of each of these periods
        assert window_index(boundary, period) == EPOCH // period
        assert window_end(boundary, period) == EPOCH + period


def test_the_instant_before_a_boundary_is_still_in_the_window_it_ends():
    for period in (1, 7, 3600):
        boundary = float(EPOCH // period * period + period)
        before = math.nextafter(boundary, 0.0)
        assert window_end(before, period) == boundary
        assert window_end(boundary, period) == boundary + period


def test_windows_align_to_the_epoch_not_to_the_subscribe():
    assert window_end(EPOCH + 0.999, 1) == EPOCH + 1
    assert window_end(EPOCH + 1799.0, 3600) == EPOCH + 3600
    assert window_end(EPOCH + 3600.0, 3600) == EPOCH + 7200


# --------------------------------------------------------------------------- the list reducer
def test_an_empty_list_reducer_takes_nothing():
    assert ListReducer().take() is None


def test_the_list_reducer_keeps_arrival_order_and_the_last_position():
    reducer = ListReducer()
    assert reducer.add("1-0", b"1", 1) == 1
    assert reducer.add("2-0", b"2,3", 2) == 3
    result = reducer.take()
    assert result is not None
    assert (result.position, result.messages_json, result.count) == ("2-0", b"1,2,3", 3)
    assert reducer.take() is None  # taking empties it


def test_a_result_builds_each_encodings_tail_once():
    result = WindowResult("5-0", b'{"a":1},2', 2)
    json_tail = result.tail(protocol.push_tail)
    assert json_tail == protocol.push_tail("5-0", b'{"a":1},2')
    assert result.tail(protocol.push_tail) is json_tail
    assert result.tail(codec.push_tail) == codec.push_tail("5-0", b'{"a":1},2')


# --------------------------------------------------------------------------- the scheduler
def test_a_window_is_pushed_once_at_its_end_with_its_messages_in_order():
    clock = Clock()
    wheel = scheduler(clock)
    got = Receiver()
    window = wheel.open(1, ListReducer, got)
    for n in range(3):
        window.add(f"{n + 1}-0", b"%d" % n, 1)
    assert wheel.next_end() == EPOCH + 1
    clock.now = EPOCH + 0.999
    assert wheel.run_due(clock.now) == 0 and got.results == []
    clock.now = EPOCH + 1.0
    assert wheel.run_due(clock.now) == 1
    assert got.messages() == [[0, 1, 2]] and got.results[0].position == "3-0"
    assert wheel.run_due(EPOCH + 10) == 0 and len(got.results) == 1


def test_an_empty_window_sends_nothing_and_is_not_on_the_wheel():
    clock = Clock()
    wheel = scheduler(clock)
    got = Receiver()
    window = wheel.open(1, ListReducer, got)
    assert wheel.next_end() is None
    window.add("1-0", b"1", 1)
    wheel.run_due(EPOCH + 1)
    assert wheel.next_end() is None  # disarmed after its push: the next message arms it again
    wheel.run_due(EPOCH + 5)
    assert len(got.results) == 1


def test_a_message_on_the_boundary_belongs_to_the_next_window():
    clock = Clock(EPOCH + 0.5)
    wheel = scheduler(clock)
    got = Receiver()
    window = wheel.open(2, ListReducer, got)
    window.add("1-0", b"1", 1)
    clock.now = EPOCH + 2.0  # exactly the end of the first window, before the scheduler reached it
    window.add("2-0", b"2", 1)
    assert got.messages() == [[1]]  # the first window went out before the message of the next
    wheel.run_due(EPOCH + 2.0)
    assert got.messages() == [[1]]  # its wheel entry is stale now
    wheel.run_due(EPOCH + 4.0)
    assert got.messages() == [[1], [2]]


def test_windows_of_different_periods_end_in_order_of_their_ends():
    clock = Clock(EPOCH + 0.5)
    wheel = scheduler(clock)
    order: list[int] = []
    for period in (5, 1, 3):
        wheel.open(period, ListReducer, lambda r, p=period: order.append(p)).add("1-0", b"1", 1)
    assert wheel.run_due(EPOCH + 10) == 3
    assert order == [1, 3, 5]


def test_many_windows_ending_together_yield_to_the_event_loop():
    clock = Clock()
    wheel = scheduler(clock, yield_every=10)
    pushed: list[int] = []
    for n in range(35):
        wheel.open(1, ListReducer, lambda r, n=n: pushed.append(n)).add("1-0", b"1", 1)
    seen_by_others: list[int] = []

    def other_greenlet() -> None:
        while len(seen_by_others) < 5:
            seen_by_others.append(len(pushed))
            gevent.sleep(0)

    gevent.spawn(other_greenlet)
    assert wheel.run_due(EPOCH + 1) == 35
    assert len(pushed) == 35
    # Another greenlet ran in the middle of the flush, not only before or after it.
    assert any(0 < seen < 35 for seen in seen_by_others), seen_by_others


def test_a_closed_window_pushes_nothing():
    clock = Clock()
    wheel = scheduler(clock)
    got = Receiver()
    window = wheel.open(1, ListReducer, got)
    window.add("1-0", b"1", 1)
    window.leave(got)
    window.add("2-0", b"2", 1)
    assert wheel.run_due(EPOCH + 5) == 1  # its wheel entry is reached, and is stale
    assert got.results == []


def test_a_failing_receiver_is_counted_and_the_other_windows_still_end():
    clock = Clock()
    wheel = scheduler(clock)
    got = Receiver()

    def broken(result: WindowResult) -> None:
        raise RuntimeError("bug")

    wheel.open(1, ListReducer, broken).add("1-0", b"1", 1)
    wheel.open(1, ListReducer, got).add("2-0", b"2", 1)
    wheel.run_due(EPOCH + 1)
    assert wheel.failures == 1 and got.messages() == [[2]]


# --------------------------------------------------------------------------- shared windows (views)
def test_a_shared_window_is_one_reducer_whose_result_reaches_every_receiver():
    clock = Clock()
    wheel = scheduler(clock)
    first, second = Receiver(), Receiver()
    key = ("app::ch", "SELECT COUNT(*) FROM `ch`", 1)
    made: list[ListReducer] = []

    def make() -> ListReducer:
        made.append(ListReducer())
        return made[-1]

    window = wheel.open(1, make, first, key=key)
    assert wheel.open(1, make, second, key=key) is window and len(made) == 1
    window.add("1-0", b"1", 1)  # fed once, by the one delivering the channel's messages per filter
    wheel.run_due(EPOCH + 1)
    assert first.results == second.results and len(first.results) == 1
    assert first.results[0] is second.results[0]  # computed once, not per subscriber


def test_a_shared_window_lives_while_anyone_receives_it():
    clock = Clock()
    wheel = scheduler(clock)
    first, second = Receiver(), Receiver()
    key = ("app::ch", "f", 1)
    window = wheel.open(1, ListReducer, first, key=key)
    wheel.open(1, ListReducer, second, key=key)
    window.add("1-0", b"1", 1)
    wheel.close(window, first)
    assert wheel.shared(key) is window
    wheel.run_due(EPOCH + 1)
    assert first.results == [] and len(second.results) == 1
    wheel.close(window, second)
    assert wheel.shared(key) is None and window.closed
    assert wheel.open(1, ListReducer, first, key=key) is not window


def test_a_shared_key_holds_one_period():
    wheel = scheduler(Clock())
    wheel.open(1, ListReducer, Receiver(), key="k")
    with pytest.raises(ValueError):
        wheel.open(2, ListReducer, Receiver(), key="k")


# --------------------------------------------------------------------------- the memory bound
def test_windows_over_their_connections_budget_are_all_pushed_early_and_the_rest_at_the_end():
    clock = Clock()
    wheel = scheduler(clock)
    budget = WindowBudget(limit=10)
    a, b = Receiver(), Receiver()
    window_a = wheel.open(1, ListReducer, a, budget=budget)
    window_b = wheel.open(5, ListReducer, b, budget=budget)
    window_b.add("1-0", b"1111", 1)
    window_a.add("2-0", b"2222", 1)
    assert budget.used == 8 and a.results == [] and b.results == []
    window_a.add("3-0", b"3333", 1)  # 12 bytes buffered > 10: both windows go out now
    assert a.messages() == [[2222, 3333]] and b.messages() == [[1111]]
    assert budget.used == 0 and not budget.holding and wheel.early_flushes == 2
    window_a.add("4-0", b"4", 1)  # the rest of the window, still armed for its end
    wheel.run_due(EPOCH + 1)
    assert a.messages() == [[2222, 3333], [4]]
    assert budget.used == 0


def test_a_closed_window_gives_its_bytes_back_to_the_budget():
    wheel = scheduler(Clock())
    budget = WindowBudget(limit=100)
    got = Receiver()
    window = wheel.open(1, ListReducer, got, budget=budget)
    window.add("1-0", b"12345", 1)
    assert budget.used == 5
    window.leave(got)
    assert budget.used == 0 and not budget.holding


# --------------------------------------------------------------------------- the greenlet
def test_the_scheduler_greenlet_ends_windows_by_the_wall_clock_and_wakes_for_an_earlier_end():
    wheel = WindowScheduler()  # the real clock and greenlet
    slow, fast = Receiver(), Receiver()
    wheel.open(MAX_PERIOD, ListReducer, slow).add("1-0", b"1", 1)  # the greenlet now sleeps towards it
    wheel.open(1, ListReducer, fast).add("2-0", b"2", 1)  # must wake it for a sooner end
    deadline = time.monotonic() + 20
    while not fast.results and time.monotonic() < deadline:
        gevent.sleep(0.05)
    assert fast.messages() == [[2]] and slow.results == []
    assert wheel.next_end() == window_end(time.time(), MAX_PERIOD)


# --------------------------------------------------------------------------- subscriptions as receivers
class Sink:
    def __init__(self) -> None:
        self.pushes: list[tuple[int, bytes, bytes]] = []

    def send_payload(self, payload: bytes) -> None:
        raise AssertionError("no error PDU expected")

    def send_push(self, counter: int, subscription_part: bytes, tail: bytes) -> None:
        self.pushes.append((counter, subscription_part, tail))


def test_subscriptions_sharing_a_window_each_push_its_result_with_their_own_id_and_encoding():
    from app.subscription import CborSubscription, Subscription

    wheel = scheduler(Clock())
    sinks = [Sink(), Sink(), Sink()]
    subs = [
        Subscription(sinks[0], "a", "ch", "app::ch", None),
        Subscription(sinks[1], "b", "ch", "app::ch", None),
        CborSubscription(sinks[2], "c", "ch", "app::ch", None),
    ]
    key = ("app::ch", "SELECT COUNT(*) FROM `ch`", 1)
    window = None
    for sub in subs:
        window = wheel.open(1, ListReducer, sub.push_window, key=key)
    assert window is not None
    window.add("7-0", b'{"COUNT(*)":3}', 1)
    wheel.run_due(EPOCH + 1)
    (json_a,), (json_b,), (cbor_c,) = (sink.pushes for sink in sinks)
    assert json_a[0] == json_b[0] == cbor_c[0] == 0
    assert json_a[1] != json_b[1]  # each its own subscription id
    assert json_a[2] is json_b[2]  # one JSON tail for every JSON subscriber
    assert cbor_c[2] == codec.push_tail("7-0", b'{"COUNT(*)":3}')
    assert [sub.position for sub in subs] == ["7-0"] * 3


def test_a_subscriptions_replay_and_live_messages_go_into_its_window():
    from app.subscription import Subscription

    clock = Clock()
    wheel = scheduler(clock)
    sink = Sink()
    sub = Subscription(sink, "s", "ch", "app::ch", None, period=1, scheduler=wheel)
    sub.begin_sync()
    sub.deliver("3-0", b"3", 1)  # live, while the replay runs
    sub.finish_sync([("1-0", b"1", 1), ("2-0", b"2", 1), ("3-0", b"3", 1)])
    sub.deliver("4-0", b"4", 1)
    assert sink.pushes == []
    wheel.run_due(EPOCH + 1)
    ((counter, _part, tail),) = sink.pushes
    assert counter == 0 and tail == protocol.push_tail("4-0", b"1,2,3,4")
    assert sub.delivered == 4 and sub.position == "4-0"
