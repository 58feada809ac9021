"""Plain-text tables for the terminal: the rows of an aggregated view's window (PROTOCOL §12).

``python -m app subscribe --filter "SELECT device.model, COUNT(*) ... GROUP BY device.model" --period 1``
prints one table per window, like the frame-rate table of the Cobra talk. Pure: rows in, text out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def cell(value: Any) -> str:
    """How one value prints: numbers as numbers (floats to 2 decimals), null as blank, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def format_table(rows: Sequence[dict[str, Any]], keys: Sequence[str] | None = None) -> str:
    """A header line, a rule, one line per row; numeric columns right-aligned, the others left-aligned.

    ``keys`` fixes the columns and their order (default: the keys of the rows, in first-seen order).
    """
    if keys is None:
        keys = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[cell(row.get(key)) for key in keys] for row in rows]
    widths = [max([len(key)] + [len(line[i]) for line in cells]) for i, key in enumerate(keys)]
    numeric = [_is_number_column([row.get(key) for row in rows]) for key in keys]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join(
        [line(list(keys)), "  ".join("-" * w for w in widths), *(line(values) for values in cells)]
    )


def _is_number_column(values: list[Any]) -> bool:
    present = [value for value in values if value is not None]
    return bool(present) and all(type(value) in (int, float) for value in present)
