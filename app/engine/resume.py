"""Where a subscriber resuming from a position restarts (PROTOCOL §7): a pure decision, no I/O.

Given the oldest and newest retained positions of a channel and the position a client asks to resume
after, decide what to replay and whether the asked position expired; for ``history: {count, age}``,
which of the newest entries to replay (:func:`history_window`, :func:`select_recent`). The Redis engine
reads the stream, the in-memory engine its list; both then act on the same decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from ..positions import START, parse_position

Entry = TypeVar("Entry", bound=tuple[Any, ...])


@dataclass(frozen=True)
class ResumeDecision:
    """``replay_after``: replay the entries strictly after this position (:data:`START` = all retained),
    or None for nothing. ``expired_at``: None when the resume is exact; otherwise the position delivery
    restarts from, which the client is told with ``expired_position``."""

    replay_after: str | None
    expired_at: str | None


NOTHING = ResumeDecision(None, None)


def decide_resume(asked: str, first: str | None, last: str | None, replay_enabled: bool) -> ResumeDecision:
    """``first``/``last``: the channel's oldest and newest retained positions (None when it has none);
    ``replay_enabled``: whether the channel keeps history for replay (``max_length > 0``)."""
    if asked == START:
        return ResumeDecision(START if replay_enabled else None, None)
    wanted = parse_position(asked)
    if last is None:
        return ResumeDecision(None, None if wanted == (0, 0) else START)
    newest = parse_position(last)
    if wanted is not None and newest is not None and wanted >= newest:
        # Nothing newer: an exact resume when it is the tail, an unknown position when it is beyond.
        return ResumeDecision(None, None if wanted == newest else last)
    if not replay_enabled:
        return ResumeDecision(None, last)  # history off: what was missed cannot be delivered
    oldest = parse_position(first) if first is not None else None
    if wanted is None or oldest is None or wanted < oldest:
        return ResumeDecision(START, first)
    return ResumeDecision(asked, None)


# --- history: {count, age} on subscribe (PROTOCOL §5) ----------------------------------------------------
@dataclass(frozen=True)
class HistoryWindow:
    """Which retained entries a ``history`` subscribe replays: the newest ``limit`` of those at or after
    millisecond ``oldest_ms`` (None: however old)."""

    oldest_ms: int | None
    limit: int


def history_window(
    count: int | None, age: int | None, now_ms: int, replay_enabled: bool, cap: int
) -> HistoryWindow | None:
    """The window for ``history: {count, age}`` asked at ``now_ms``, or None when nothing is replayed:
    ``count: 0``, ``{}``, or a channel without history. The entries replayed are among the channel's last
    ``count`` **and** not older than ``age`` seconds; never more than ``cap`` (the replay bound)."""
    if not replay_enabled or count == 0 or (count is None and age is None):
        return None
    limit = cap if count is None else min(count, cap)
    return HistoryWindow(None if age is None else now_ms - age * 1000, limit)


def select_recent(entries: list[Entry], window: HistoryWindow | None) -> list[Entry]:
    """The entries of ``window`` among ``entries`` (oldest first, ``(position, ...)``), oldest first."""
    if window is None:
        return []
    if window.oldest_ms is not None:
        oldest = window.oldest_ms
        entries = [entry for entry in entries if _ms(entry[0]) >= oldest]
    return entries[-window.limit :]


def _ms(position: str) -> int:
    parsed = parse_position(position)
    return parsed[0] if parsed is not None else 0
