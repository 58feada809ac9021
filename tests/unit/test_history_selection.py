"""``history: {count, age}`` on subscribe (PROTOCOL §5), the pure part: which retained entries replay."""

from __future__ import annotations

from app.engine.resume import HistoryWindow, history_window, select_recent

NOW = 1_700_000_100_000  # ms
CAP = 1000
# One entry per second, the newest at NOW - 1 s: positions "<ms>-0".
ENTRIES = [(f"{NOW - (10 - i) * 1000}-0", i) for i in range(10)]


def selected(count=None, age=None, entries=ENTRIES, replay_enabled=True, cap=CAP):
    window = history_window(count, age, NOW, replay_enabled, cap)
    return [value for _position, value in select_recent(entries, window)]


def test_count_replays_the_last_n():
    assert selected(count=3) == [7, 8, 9]


def test_count_larger_than_the_history_replays_all_of_it():
    assert selected(count=50) == list(range(10))


def test_age_replays_what_is_not_older_than_s_seconds():
    assert selected(age=3) == [7, 8, 9]  # 3 s, 2 s and 1 s old; the one 4 s old is out
    assert selected(age=100) == list(range(10))


def test_count_and_age_together_replay_what_both_admit():
    assert selected(count=2, age=5) == [8, 9]
    assert selected(count=5, age=2) == [8, 9]


def test_count_zero_an_empty_history_object_or_history_off_replay_nothing():
    assert history_window(0, 10, NOW, True, CAP) is None
    assert history_window(None, None, NOW, True, CAP) is None
    assert history_window(5, None, NOW, False, CAP) is None
    assert selected(count=0) == selected() == selected(count=5, replay_enabled=False) == []


def test_age_zero_admits_only_the_current_millisecond():
    assert selected(age=0) == []
    assert selected(age=0, entries=[(f"{NOW}-0", "now")]) == ["now"]


def test_the_replay_bound_caps_what_any_window_returns():
    assert history_window(None, 10, NOW, True, 4) == HistoryWindow(NOW - 10_000, 4)
    assert selected(count=8, cap=4) == [6, 7, 8, 9]
