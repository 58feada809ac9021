"""Aggregated views (PROTOCOL §12): a parsed view → a window object that folds messages into groups.

The broker keeps one ``ViewWindow`` per distinct view per channel per process and window: ``add`` runs once
per matching message (the WHERE is the view's StreamFilter, applied before), ``rows`` once per window. The
per-message step is generated code, like the filters' (see ``codegen``): one flat function that reads the
group paths, finds the group and updates every accumulator in place, with every value from the filter text
passed in as a closure cell, never interpolated. State is O(groups) (plus O(distinct values) for
COUNT(DISTINCT), capped the same way), never O(messages).

Semantics, where §12 is silent:
- Numbers are ints and floats; booleans are not numbers (``true`` is skipped by SUM, as in JSON), strings,
  nulls, arrays and objects are skipped by SUM/AVG/MIN/MAX. ``COUNT(path)`` counts every non-null value.
- Group values and distinct values compare by JSON equality: ``1`` and ``1.0`` are one group, ``1`` and
  ``true`` two; arrays and objects group by their content.
- Rows are ordered by group key, column by column: null first, then booleans, numbers, strings, and arrays and
  objects (by their JSON text) last.
- A message that is not an object has every path null (it still counts in ``COUNT(*)``).
- At most ``max_groups`` groups per window; a message that would open one more is not counted at all and
  adds 1 to ``dropped_groups``. A COUNT(DISTINCT) keeps at most ``max_groups`` distinct values per group; a
  value past that is not counted and adds 1 to ``dropped_distinct``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from app.stream_sql.codegen import path_code
from app.stream_sql.parser import Aggregate, Path, Query

_NUMBERS = (int, float)
_PLAIN = frozenset({str, int, float, type(None)})  # hash by JSON equality as they are
_EMPTY: dict[str, Any] = {}


def freeze(value: Any) -> Any:
    """A hashable stand-in, equal exactly when the JSON values are (``true`` is not ``1``)."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is bool:
        return (bool, value)
    return (list, orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def order_key(value: Any) -> tuple[int, Any]:
    """Sort key of one group value: null < booleans < numbers < strings < arrays/objects (by JSON text)."""
    kind = type(value)
    if value is None:
        return (0, 0)
    if kind is bool:
        return (1, value)
    if kind in _NUMBERS:
        return (2, value)
    if kind is str:
        return (3, value)
    return (4, orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


@dataclass(frozen=True, slots=True)
class _Output:
    key: str
    kind: str  # "group", "COUNT", "DISTINCT", "SUM", "MIN", "MAX", "AVG"
    slot: int  # where its value or accumulator lives in a group's list


class ViewWindow:
    """The groups of one view over one window; ``add`` is the generated per-message step."""

    __slots__ = ("_group_count", "_groups", "_outputs", "_stats", "add")

    def __init__(
        self,
        outputs: tuple[_Output, ...],
        group_count: int,
        make_add: Callable[..., Callable[[Any], None]],
        max_groups: int,
    ) -> None:
        self._group_count = group_count
        self._groups: dict[Any, list[Any]] = {}
        self._stats = [0, 0]  # dropped_groups, dropped_distinct
        self._outputs = outputs
        self.add: Callable[[Any], None] = make_add(self._groups, self._stats, max_groups)

    def __bool__(self) -> bool:
        return bool(self._groups)

    @property
    def dropped_groups(self) -> int:
        """Messages not counted because the window already had ``max_groups`` groups."""
        return self._stats[0]

    @property
    def dropped_distinct(self) -> int:
        """Values not counted by a COUNT(DISTINCT) that already held ``max_groups`` distinct values."""
        return self._stats[1]

    def rows(self) -> list[dict[str, Any]]:
        """One flat object per group, ordered by group key (§12); ``[]`` for an empty window."""
        groups = list(self._groups.values())
        if self._group_count and len(groups) > 1:  # the group values are the first slots, in GROUP BY order
            width = self._group_count
            groups.sort(key=lambda g: [order_key(value) for value in g[:width]])
        return [{o.key: _result(o, g) for o in self._outputs} for g in groups]


def _result(output: _Output, group: list[Any]) -> Any:
    value = group[output.slot]
    kind = output.kind
    if kind == "DISTINCT":
        return len(value)
    if kind == "AVG":
        count = group[output.slot + 1]
        return value / count if count else None
    return value  # group value, COUNT, SUM, MIN, MAX (None over no number)


@dataclass(frozen=True, eq=False)
class AggregateView:
    """A compiled view: ``new_window(max_groups)`` starts an empty window; ``keys`` are its row's keys."""

    keys: tuple[str, ...]
    group_by: tuple[str, ...]
    _outputs: tuple[_Output, ...]
    _make_add: Callable[..., Callable[[Any], None]]

    def new_window(self, max_groups: int) -> ViewWindow:
        return ViewWindow(self._outputs, len(self.group_by), self._make_add, max_groups)


def compile_view(query: Query) -> AggregateView:
    """Generate the per-message step of a parsed view (``query.is_view``)."""
    assert query.columns is not None and query.is_view
    cells: dict[str, Any] = {"type": type, "len": len, "_NUMBERS": _NUMBERS, "_PLAIN": _PLAIN}
    cells.update({"dict": dict, "set": set, "_freeze": freeze, "_EMPTY": _EMPTY})

    def constant(value: Any) -> str:
        name = f"_c{len(cells)}"
        cells[name] = value
        return name

    # Slots of a group's list: the group values first (in GROUP BY order), then the accumulators.
    group_slot = {path: i for i, path in enumerate(query.group_by)}
    slot = len(query.group_by)
    init: list[str] = ["_v" + str(i) for i in range(len(query.group_by))]
    steps: list[str] = []
    outputs: list[_Output] = []
    for key, column in query.columns:
        if isinstance(column, Path):
            outputs.append(_Output(key, "group", group_slot[column]))
            continue
        kind, code = _accumulator(column, slot, constant)
        outputs.append(_Output(key, kind, slot))
        init += ["set()" if kind == "DISTINCT" else "0" if kind == "COUNT" else "None"]
        if kind == "AVG":
            init[-1] = "0"
            init.append("0")  # AVG keeps (sum, count) in two slots
            slot += 1
        slot += 1
        steps += code
    reads = [f"    _v{i} = {path_code(path, constant)}" for i, path in enumerate(query.group_by)]
    if len(query.group_by) == 1:
        key_code = "_v0 if type(_v0) in _PLAIN else _freeze(_v0)"
    else:
        frozen = (f"_v{i} if type(_v{i}) in _PLAIN else _freeze(_v{i})" for i in range(len(query.group_by)))
        key_code = "(" + ", ".join(frozen) + ",)"
    body = [
        "def make_add(groups, stats, max_groups):",
        "    get = groups.get",
        "    def add(m):",
        "        if type(m) is not dict:",
        "            m = _EMPTY",
        *("    " + line for line in reads),
        f"        k = {key_code}" if query.group_by else "        k = None",
        "        g = get(k)",
        "        if g is None:",
        "            if len(groups) >= max_groups:",
        "                stats[0] += 1",
        "                return",
        f"            g = groups[k] = [{', '.join(init)}]",
        *("        " + line for line in steps),
        "    return add",
    ]
    factory = [f"def factory({', '.join(cells)}):", *(f"    {line}" for line in body), "    return make_add"]
    namespace: dict[str, Any] = {"__builtins__": {}}
    exec(compile("\n".join(factory), "<stream_sql view>", "exec"), namespace)
    make_add = namespace["factory"](*cells.values())
    keys = tuple(key for key, _ in query.columns)
    group_by = tuple(".".join(path.segments) for path in query.group_by)
    return AggregateView(keys, group_by, tuple(outputs), make_add)


def _accumulator(column: Aggregate, slot: int, constant: Callable[[Any], str]) -> tuple[str, list[str]]:
    """The kind of one aggregate and the lines that update its slot(s) of group ``g`` for message ``m``."""
    function = column.function
    if column.path is None:  # COUNT(*)
        return "COUNT", [f"g[{slot}] += 1"]
    value = path_code(column.path, constant)
    if function == "COUNT" and column.distinct:
        return "DISTINCT", [
            f"if (_x := {value}) is not None:",
            f"    _s = g[{slot}]",
            "    _d = _x if type(_x) in _PLAIN else _freeze(_x)",
            "    if _d not in _s:",
            "        if len(_s) >= max_groups:",
            "            stats[1] += 1",
            "        else:",
            "            _s.add(_d)",
        ]
    if function == "COUNT":
        return "COUNT", [f"if {value} is not None:", f"    g[{slot}] += 1"]
    number = f"if type(_x := {value}) in _NUMBERS:"
    if function == "SUM":
        return "SUM", [number, f"    g[{slot}] = _x if g[{slot}] is None else g[{slot}] + _x"]
    if function == "AVG":
        return "AVG", [number, f"    g[{slot}] += _x", f"    g[{slot + 1}] += 1"]
    compare = "<" if function == "MIN" else ">"
    return function, [
        number,
        f"    if g[{slot}] is None or _x {compare} g[{slot}]:",
        f"        g[{slot}] = _x",
    ]
