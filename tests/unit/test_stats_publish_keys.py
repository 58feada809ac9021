"""Stats.on_publish keeps each channel's counter key between publishes; the keys go with the interval."""

from __future__ import annotations

from app.stats import Stats


def test_publishes_are_counted_per_channel_key_across_intervals():
    stats = Stats()
    stats.on_publish("app1", "writer", ["a", "b"], 10)
    stats.on_publish("app1", None, ["a"], 5)
    stats.on_publish("app2", "writer", ["a"], 7)  # same channel name, another app: another key
    interval = stats.take_channel_interval()
    assert interval.published_count == {b"app1::a": 2, b"app1::b": 1, b"app2::a": 1}
    assert interval.published_bytes == {b"app1::a": 15, b"app1::b": 10, b"app2::a": 7}
    assert stats.published_count == {"writer": 3, "-": 1}
    assert stats.published_bytes == {"writer": 27, "-": 5}
    assert (stats.publishes, stats.published_total_bytes) == (4, 32)

    stats.on_publish("app1", "writer", ["b"], 3)
    assert stats.take_channel_interval().published_count == {b"app1::b": 1}


def test_the_key_cache_names_only_the_current_intervals_channels():
    stats = Stats()
    for i in range(100):
        stats.on_publish("app1", "writer", [f"c{i}"], 1)
    stats.take_channel_interval()
    stats.on_publish("app1", "writer", ["last"], 1)
    assert stats._channel_keys == {"app1": {"last": b"app1::last"}}
