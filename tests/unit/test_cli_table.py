"""The terminal table of ``python -m app subscribe`` for aggregated views (app/cli/table.py)."""

from __future__ import annotations

from app.cli.table import cell, format_table


def test_numbers_right_aligned_text_left_null_blank():
    text = format_table(
        [
            {"device.model": "pixel", "fps": 59.934, "n": 120},
            {"device.model": None, "fps": 30.0, "n": 7},
            {"device.model": "iphone 12", "fps": None, "n": 1234},
        ]
    )
    assert text.splitlines() == [
        "device.model    fps     n",
        "------------  -----  ----",
        "pixel         59.93   120",
        "              30.00     7",
        "iphone 12            1234",
    ]


def test_keys_fix_the_columns_and_their_order():
    assert format_table([{"a": 1, "b": "x"}], keys=["b", "a"]).splitlines()[0] == "b  a"


def test_cells_of_other_json_values():
    assert [cell(v) for v in (True, False, [1, 2], {"k": "v"}, 3)] == [
        "true",
        "false",
        "[1,2]",
        '{"k":"v"}',
        "3",
    ]


def test_a_column_mixing_text_and_numbers_is_left_aligned():
    lines = format_table([{"k": 1}, {"k": "long text"}]).splitlines()
    assert lines[2] == "1"
