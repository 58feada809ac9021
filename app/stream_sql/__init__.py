"""StreamSQL: filter and reshape messages on the broker before delivery (PROTOCOL §6).

Sans-I/O: text in, compiled functions out. The broker calls ``compile_filter`` once per subscribe and
``StreamFilter.apply`` once per published message per distinct filter; everything here is pure and
thread/greenlet-safe. See ``lexer`` for the tokens, ``parser`` for the grammar and ``codegen`` for the
evaluation rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from app.stream_sql.aggregate import AggregateView, ViewWindow, compile_view
from app.stream_sql.cache import FilterCache
from app.stream_sql.codegen import generate
from app.stream_sql.errors import FilterError
from app.stream_sql.parser import parse

__all__ = ["AggregateView", "FilterError", "StreamFilter", "ViewWindow", "compile_filter"]


@dataclass(frozen=True, eq=False)
class StreamFilter:
    """A compiled filter; identical text compiles to the same object (see compile_filter).

    The three callables are plain functions stored on the instance (not methods) so that the hot path,
    ``f.matches(message)``, is one call into generated code with no bound-method hop.

    - ``matches(message) -> bool``: the WHERE predicate alone (always true without WHERE). A message that is
      not an object matches no WHERE clause.
    - ``project(message)``: the projection alone: the message itself for ``SELECT *`` (not copied: do not
      mutate it), else a fresh flat object keyed by alias, or by the path as written minus any backticks,
      with null for a missing field or when the message is not an object.
    - ``apply(message) -> list``: what to deliver for one published message: ``[]`` or ``[project(message)]``;
      for an object with a truthy ``messages`` array (a republished batch), the projection of each matching
      element instead, possibly none.
    - ``view``: for an aggregated view (§12: aggregates or GROUP BY), what folds the messages of a window into
      rows; ``matches``/``apply`` are then its WHERE alone, as for ``SELECT *``, so ``apply`` yields the
      messages to aggregate. None for a plain filter.
    """

    text: str
    channel: str
    is_star: bool
    has_where: bool
    matches: Callable[[Any], bool]
    project: Callable[[Any], Any]
    apply: Callable[[Any], list[Any]]
    view: AggregateView | None = None

    def __repr__(self) -> str:
        return f"StreamFilter({self.text!r})"


CACHE: FilterCache[StreamFilter] = FilterCache()
"""Process-wide; its limits are attributes (``max_entries``, ``max_chars``) the broker may set at startup."""


def compile_filter(text: str, *, max_length: int = 4096, max_depth: int = 32) -> StreamFilter:
    """Parse and compile ``text`` once, raising FilterError (with a position) for anything invalid.

    ``max_length`` (characters) and ``max_depth`` (nesting of parentheses and NOT) bound what one subscribe
    request can make the broker parse, compile and keep in memory. Identical text with identical limits
    returns the same StreamFilter object for as long as something (a subscription) holds it, and the most
    recently compiled filters are kept for reuse (see ``cache``), so the engine can group subscriptions by
    filter identity and evaluate each distinct filter once per message.
    """
    if not isinstance(text, str):
        raise FilterError(f"filter must be a string, not {type(text).__name__} at position 0", 0)
    if len(text) > max_length:  # checked first so that a huge text is never hashed or stored
        raise FilterError(f"filter longer than {max_length} characters at position {max_length}", max_length)
    key = (text, max_length, max_depth)
    cached = CACHE.get(key)
    if cached is not None:
        return cached
    if not text.strip():
        raise FilterError("empty filter at position 0", 0)
    try:
        query = parse(text, max_depth)
        view = compile_view(query) if query.is_view else None
        if view is not None:  # the filter part of a view is its WHERE; the projection is the aggregation's
            query = replace(query, columns=None, group_by=())
        matches, project = generate(query)
    except (RecursionError, MemoryError, SyntaxError) as exc:
        # Only reachable with a max_depth far above the default: the Python parser caps nesting near 200.
        raise FilterError("filter too complex to compile at position 0", 0) from exc
    is_star, has_where = query.columns is None, query.where is not None
    compiled = StreamFilter(
        text=text,
        channel=query.channel,
        is_star=is_star,
        has_where=has_where,
        matches=matches,
        project=project,
        apply=_applier(matches, project, is_star, has_where),
        view=view,
    )
    return CACHE.add(key, compiled)


def _applier(
    matches: Callable[[Any], bool], project: Callable[[Any], Any], is_star: bool, has_where: bool
) -> Callable[[Any], list[Any]]:
    # One specialised closure per shape: the no-WHERE and SELECT * cases skip the calls they do not need.
    # The ``messages`` rule (§6, "compatibility with republished batches") is checked first in each.
    if not has_where and is_star:

        def apply(message: Any) -> list[Any]:
            if type(message) is dict and type(batch := message.get("messages")) is list and batch:
                return list(batch)
            return [message]

    elif not has_where:

        def apply(message: Any) -> list[Any]:
            if type(message) is dict and type(batch := message.get("messages")) is list and batch:
                return [project(item) for item in batch]
            return [project(message)]

    elif is_star:

        def apply(message: Any) -> list[Any]:
            if type(message) is dict and type(batch := message.get("messages")) is list and batch:
                return [item for item in batch if matches(item)]
            return [message] if matches(message) else []

    else:

        def apply(message: Any) -> list[Any]:
            if type(message) is dict and type(batch := message.get("messages")) is list and batch:
                return [project(item) for item in batch if matches(item)]
            return [project(message)] if matches(message) else []

    return apply
