"""Aggregated views on the broker (PROTOCOL §12): the window reducer, and what a view subscription shares.

A view subscription (a filter with aggregates or GROUP BY) does not receive messages: the process keeps ONE
shared time window per distinct view — key ``(channel key, filter text, period, max_groups)`` — fed once per
message by the router (:class:`app.engine.routes.Route` keeps views apart from the filter groups), and every
subscription of that view is a receiver of the window's result, one push of rows per window
(:mod:`app.windows` ends windows; :mod:`app.stream_sql.aggregate` folds messages into groups).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from .windows import WindowResult

if TYPE_CHECKING:
    from .stream_sql import AggregateView

DEFAULT_PERIOD = 1  # §12: "A filter with aggregates and no period uses period: 1"


class ViewReducer:
    """The :class:`app.windows.WindowReducer` of a view: messages in, one row per group out.

    Holds O(groups) state (see ``app.stream_sql.aggregate``), so it reports no retained bytes: a view
    window never counts against a connection's window budget."""

    __slots__ = ("_max_groups", "_position", "_view", "_window")

    def __init__(self, view: AggregateView, max_groups: int) -> None:
        self._view = view
        self._max_groups = max_groups
        self._window = view.new_window(max_groups)
        self._position = ""

    def add(self, position: str, value: Any, count: int) -> int:
        self._window.add(value)
        self._position = position
        return 0

    def take(self) -> WindowResult | None:
        window = self._window
        if not window:
            return None
        self._window = self._view.new_window(self._max_groups)
        rows = window.rows()
        result = WindowResult(self._position, b",".join([orjson.dumps(row) for row in rows]), len(rows))
        if window.dropped_groups:
            result.extra = {"dropped_groups": window.dropped_groups}
        return result


def view_key(key: str, filter_text: str, period: int, max_groups: int) -> tuple[str, str, int, int]:
    """What makes two view subscriptions of one process share a window."""
    return (key, filter_text, period, max_groups)
