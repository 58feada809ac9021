"""The history/live switch-over (PROTOCOL §7), as the resume and the fill both use it: every replayed
message, then the buffered live ones the history did not contain, in order; no gap, no duplicate."""

from __future__ import annotations

from app.engine.merge import merge
from app.positions import parse_position


def by_position(item):
    return parse_position(item)


def test_everything_replayed_is_delivered_and_the_newest_is_remembered():
    assert merge(["1-0", "2-0"], [], by_position) == (["1-0", "2-0"], (2, 0))


def test_buffered_messages_the_history_already_had_are_dropped():
    delivered, last = merge(["1-0", "2-0", "3-0"], ["2-0", "3-0", "4-0"], by_position)
    assert delivered == ["1-0", "2-0", "3-0", "4-0"]
    assert last == (4, 0)


def test_buffered_messages_older_than_the_history_are_dropped_too():
    assert merge(["5-0"], ["4-9", "5-0", "5-1"], by_position)[0] == ["5-0", "5-1"]


def test_a_gap_between_history_and_live_is_not_invented_away():
    # The history ends at 2, the buffer starts at 7: both are delivered, nothing dropped between them.
    assert merge(["1-0", "2-0"], ["7-0", "8-0"], by_position)[0] == ["1-0", "2-0", "7-0", "8-0"]


def test_an_empty_history_delivers_the_whole_buffer():
    assert merge([], ["1-0", "2-0"], by_position) == (["1-0", "2-0"], (2, 0))


def test_nothing_at_all_leaves_the_floor_unchanged():
    assert merge([], [], by_position) == ([], None)
    assert merge([], [], by_position, after=(3, 0)) == ([], (3, 0))


def test_a_floor_from_an_earlier_round_drops_what_it_covers():
    assert merge([], ["3-0", "4-0"], by_position, after=(3, 0)) == (["4-0"], (4, 0))


def test_duplicates_inside_the_buffer_are_dropped():
    assert merge([], ["1-0", "1-0", "2-0", "1-5"], by_position)[0] == ["1-0", "2-0"]


def test_positions_compare_as_numbers_not_strings():
    # "10-0" < "9-0" as strings; as positions, 10 is newer.
    assert merge(["9-0"], ["10-0"], by_position)[0] == ["9-0", "10-0"]


def test_a_malformed_position_is_delivered_and_moves_nothing():
    delivered, last = merge(["1-0", "junk"], ["bad", "1-0", "2-0"], by_position)
    assert delivered == ["1-0", "junk", "bad", "2-0"]
    assert last == (2, 0)


def test_items_of_any_shape_merge_by_their_key():
    replayed = [("1-0", b"a", 1), ("2-0", b"b", 1)]
    buffered = [("2-0", b"b", 1), ("3-0", b"c", 2)]
    delivered, last = merge(replayed, buffered, lambda item: parse_position(item[0]))
    assert [item[1] for item in delivered] == [b"a", b"b", b"c"]
    assert last == (3, 0)
