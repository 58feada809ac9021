"""Aggregated views (PROTOCOL §12): one test per grammar rule and per semantic rule of app.stream_sql."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.stream_sql import FilterError, compile_filter


def rows(text: str, messages: list[Any], max_groups: int = 1000) -> list[dict[str, Any]]:
    window = window_of(text, messages, max_groups)
    return window.rows()


def window_of(text: str, messages: list[Any], max_groups: int = 1000) -> Any:
    compiled = compile_filter(text)
    assert compiled.view is not None
    window = compiled.view.new_window(max_groups)
    for message in messages:
        for item in compiled.apply(message):
            window.add(item)
    return window


def refused(text: str) -> FilterError:
    with pytest.raises(FilterError) as caught:
        compile_filter(text)
    return caught.value


# -- grammar


def test_the_talks_view_parses_with_aliases_and_where():
    view = compile_filter(
        "SELECT device.model, AVG(data.fps) AS fps, COUNT(*) AS n FROM `engine_fps_id` WHERE data.fps > 0"
        " GROUP BY device.model"
    )
    assert view.channel == "engine_fps_id"
    assert view.view is not None and view.view.keys == ("device.model", "fps", "n")
    assert view.view.group_by == ("device.model",)


def test_output_keys_are_the_normalised_upper_case_call():
    view = compile_filter(
        "select count(*), count(data.u), count( distinct  data.u ), sum(a), avg(a), min(a), max(a) from c"
    )
    assert view.view is not None
    assert view.view.keys == (
        "COUNT(*)",
        "COUNT(data.u)",
        "COUNT(DISTINCT data.u)",
        "SUM(a)",
        "AVG(a)",
        "MIN(a)",
        "MAX(a)",
    )


def test_backticks_are_dropped_from_the_key_like_projections():
    view = compile_filter("SELECT SUM(data.`content-length`) FROM c")
    assert view.view is not None and view.view.keys == ("SUM(data.content-length)",)


def test_group_by_without_aggregates_is_a_view_of_distinct_groups():
    assert rows("SELECT a FROM c GROUP BY a", [{"a": 2}, {"a": 1}, {"a": 2}]) == [{"a": 1}, {"a": 2}]


def test_group_by_several_paths():
    result = rows(
        "SELECT a, b, COUNT(*) FROM c GROUP BY a, b",
        [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "x"}],
    )
    assert result == [{"a": 1, "b": "x", "COUNT(*)": 2}, {"a": 1, "b": "y", "COUNT(*)": 1}]


def test_contextual_words_stay_usable_as_field_names():
    plain = compile_filter("SELECT group, count, distinct, by FROM c WHERE group = 1 AND count > 2")
    assert plain.view is None
    assert plain.apply({"group": 1, "count": 3, "by": "x"}) == [
        {"group": 1, "count": 3, "distinct": None, "by": "x"}
    ]


@pytest.mark.parametrize(
    ("text", "reason", "position"),
    [
        ("SELECT a, COUNT(*) FROM c", "column 'a' at position 7 must be in GROUP BY", 7),
        ("SELECT b AS x, COUNT(*) FROM c GROUP BY a", "column 'b' at position 7 must be in GROUP BY", 7),
        ("SELECT * FROM c GROUP BY a", "SELECT * cannot be grouped at position 7", 7),
        ("SELECT COUNT(*) FROM c WHERE COUNT(a) > 1", "aggregate function COUNT is not allowed in WHERE", 29),
        (
            "SELECT COUNT(*) FROM c WHERE a = 1 AND max(b) = 2",
            "aggregate function MAX is not allowed in WHERE",
            39,
        ),
        ("SELECT SUM(COUNT(a)) FROM c", "nested aggregate functions are not allowed at position 11", 11),
        ("SELECT median(a) FROM c", "unknown function 'median' at position 7", 7),
        ("SELECT data.count(a) FROM c", "unknown function 'data.count' at position 7", 7),
        ("SELECT SUM(*) FROM c", "SUM(*) is not supported (only COUNT(*)) at position 11", 11),
        ("SELECT AVG(DISTINCT a) FROM c", "DISTINCT is only supported in COUNT at position 11", 11),
        ("SELECT COUNT(*) FROM c GROUP a", "unexpected token 'a' at position 29 (expected BY)", 29),
        (
            "SELECT COUNT(*) FROM c GROUP BY",
            "unexpected end of filter at position 31 (expected a field path)",
            31,
        ),
        ("SELECT COUNT(*) FROM c GROUP BY a, a", "duplicate GROUP BY path at position 35", 35),
        ("SELECT COUNT(*) FROM c GROUP BY COUNT(a)", "aggregate functions are not allowed in GROUP BY", 32),
        ("SELECT COUNT(a FROM c", "unexpected token 'FROM' at position 15 (expected ')')", 15),
        ("SELECT COUNT(*), COUNT(*) FROM c", "duplicate column 'COUNT(*)' at position 17", 17),
        ("SELECT COUNT(*) FROM c WHERE a = 1 b", "expected AND, OR, GROUP BY or end of filter", 35),
    ],
)
def test_misuse_is_an_invalid_filter_with_a_position(text: str, reason: str, position: int):
    error = refused(text)
    assert reason in str(error), str(error)
    assert error.position == position


# -- semantics


def test_rows_are_ordered_by_group_key_null_first_then_bool_number_string_json():
    messages = [{"k": v} for v in ["b", 2, [1], True, None, "a", 1.5, False, {"x": 1}]] + [{}]
    keys = [row["k"] for row in rows("SELECT k, COUNT(*) FROM c GROUP BY k", messages)]
    assert keys == [None, False, True, 1.5, 2, "a", "b", [1], {"x": 1}]


def test_group_order_follows_group_by_not_the_projection():
    messages = [{"a": 2, "b": 1}, {"a": 1, "b": 2}]
    assert [r["a"] for r in rows("SELECT b, a, COUNT(*) FROM c GROUP BY a, b", messages)] == [1, 2]


def test_groups_use_json_equality():
    result = rows(
        "SELECT k, COUNT(*) AS n FROM c GROUP BY k",
        [{"k": 1}, {"k": 1.0}, {"k": True}, {"k": [1, {"a": 2}]}, {"k": [1, {"a": 2}]}],
    )
    assert [r["n"] for r in result] == [1, 2, 2]  # true, then 1 and 1.0, then the equal lists


def test_missing_field_groups_as_null():
    assert rows("SELECT a, COUNT(*) AS n FROM c GROUP BY a", [{"b": 1}, {"a": None}]) == [{"a": None, "n": 2}]


def test_without_group_by_the_whole_window_is_one_row():
    assert rows("SELECT COUNT(*) AS n, SUM(v) AS s FROM c", [{"v": 1}, {"v": 2}, {"w": 3}]) == [
        {"n": 3, "s": 3}
    ]


def test_empty_window_has_no_rows():
    window = window_of("SELECT COUNT(*) FROM c", [])
    assert not window and window.rows() == []


def test_where_filters_before_aggregation():
    assert rows("SELECT COUNT(*) AS n FROM c WHERE v > 1", [{"v": 1}, {"v": 2}, {"v": 3}, "text"]) == [
        {"n": 2}
    ]


def test_non_object_messages_have_null_paths_but_count():
    assert rows("SELECT COUNT(*) AS n, COUNT(v) AS nv FROM c", [1, "x", None, {"v": 0}]) == [
        {"n": 4, "nv": 1}
    ]


def test_republished_batches_are_aggregated_element_by_element():
    batch = {"messages": [{"v": 1}, {"v": 2}, {"v": 5}]}
    assert rows("SELECT SUM(v) AS s, COUNT(*) AS n FROM c WHERE v < 5", [batch]) == [{"s": 3, "n": 2}]


def test_numbers_only_mixed_types_are_skipped():
    messages = [{"v": v} for v in [1, 2.5, "3", True, False, None, [4], {"x": 5}]] + [{}]
    assert rows(
        "SELECT SUM(v) AS s, AVG(v) AS a, MIN(v) AS lo, MAX(v) AS hi, COUNT(v) AS n FROM c", messages
    ) == [{"s": 3.5, "a": 1.75, "lo": 1, "hi": 2.5, "n": 7}]


def test_integers_stay_integers_and_avg_is_a_float():
    (row,) = rows("SELECT SUM(v) AS s, MIN(v) AS lo, MAX(v) AS hi, AVG(v) AS a FROM c", [{"v": 2}, {"v": 4}])
    assert row == {"s": 6, "lo": 2, "hi": 4, "a": 3.0}
    assert type(row["s"]) is int and type(row["lo"]) is int and type(row["a"]) is float


def test_aggregates_over_no_number_are_null_and_count_is_zero():
    (row,) = rows(
        "SELECT SUM(v) AS s, AVG(v) AS a, MIN(v) AS lo, MAX(v) AS hi, COUNT(v) AS n FROM c", [{"v": "x"}]
    )
    assert row == {"s": None, "a": None, "lo": None, "hi": None, "n": 1}
    (row,) = rows("SELECT COUNT(v) AS n, COUNT(DISTINCT v) AS d FROM c", [{}])
    assert row == {"n": 0, "d": 0}


def test_count_distinct_uses_json_equality_and_skips_null():
    messages = [{"u": u} for u in [1, 1.0, True, "1", None, [1], [1]]] + [{}]
    assert rows("SELECT COUNT(DISTINCT u) AS d FROM c", messages) == [{"d": 4}]


def test_group_overflow_counts_dropped_messages_and_keeps_existing_groups_counting():
    messages = [{"k": k} for k in [1, 2, 3, 1, 4, 2, 3]]
    window = window_of("SELECT k, COUNT(*) AS n FROM c GROUP BY k", messages, max_groups=2)
    assert window.rows() == [{"k": 1, "n": 2}, {"k": 2, "n": 2}]
    assert window.dropped_groups == 3


def test_distinct_values_are_bounded_per_group():
    window = window_of(
        "SELECT COUNT(DISTINCT u) AS d FROM c", [{"u": i % 7} for i in range(50)], max_groups=5
    )
    assert window.rows() == [{"d": 5}]
    assert window.dropped_distinct == sum(1 for i in range(50) if i % 7 >= 5)  # 5 and 6 came too late


def test_state_is_per_group_not_per_message():
    window = window_of(
        "SELECT k, AVG(v), COUNT(DISTINCT k) FROM c GROUP BY k", [{"k": i % 3, "v": i} for i in range(10_000)]
    )
    assert len(window._groups) == 3  # what the window holds is the point
    assert all(len(group) == 4 for group in window._groups.values())


def test_windows_of_one_view_are_independent():
    compiled = compile_filter("SELECT COUNT(*) AS n FROM c")
    assert compiled.view is not None
    first, second = compiled.view.new_window(10), compiled.view.new_window(10)
    first.add({})
    assert first.rows() == [{"n": 1}] and second.rows() == []


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", None, 1]),
            st.one_of(
                st.integers(-5, 5), st.floats(-1e6, 1e6), st.text(max_size=2), st.none(), st.booleans()
            ),
        ),
        max_size=60,
    )
)
def test_matches_a_straightforward_reference(pairs: list[tuple[Any, Any]]):
    messages = [{"k": k, "v": v} for k, v in pairs]
    expected: dict[Any, dict[str, Any]] = {}
    for k, v in pairs:
        row = expected.setdefault(
            ("n", k) if k is None else (type(k).__name__, k), {"k": k, "n": 0, "nums": []}
        )
        row["n"] += 1
        if type(v) in (int, float):
            row["nums"].append(v)
    got = {
        (("n", r["k"]) if r["k"] is None else (type(r["k"]).__name__, r["k"])): r
        for r in rows(
            "SELECT k, COUNT(*) AS n, SUM(v) AS s, MAX(v) AS hi, AVG(v) AS a FROM c GROUP BY k", messages
        )
    }
    assert got.keys() == expected.keys()
    for key, row in expected.items():
        nums = row["nums"]
        assert got[key]["n"] == row["n"]
        assert got[key]["hi"] == (max(nums) if nums else None)
        assert got[key]["s"] == pytest.approx(sum(nums)) if nums else got[key]["s"] is None
        assert got[key]["a"] == pytest.approx(sum(nums) / len(nums)) if nums else got[key]["a"] is None
