"""Reading channel history from a shard's Redis streams (redis-py: off the hot path).

What to read is decided elsewhere, without I/O (:func:`.resume.decide_resume`); these functions only fetch.
"""

from __future__ import annotations

import redis

from ..positions import START
from .history import HistoryPolicy
from .resume import HistoryWindow, ResumeDecision, decide_resume


def _entries(raw: list[tuple[bytes, dict[bytes, bytes]]]) -> list[tuple[str, bytes]]:
    return [(entry_id.decode(), fields.get(b"m", b"null")) for entry_id, fields in raw]


def entries_after(client: redis.Redis, key: str, position: str, limit: int) -> list[tuple[str, bytes]]:
    """Entries strictly after ``position`` (``"0-0"``: all), oldest first."""
    start = "-" if position == START else "(" + position
    return _entries(client.xrange(key, min=start, max="+", count=limit))


def entries_between(
    client: redis.Redis, key: str, start: str, inclusive: bool, upto: str, limit: int
) -> list[tuple[str, bytes]]:
    """At most ``limit`` entries from ``start`` (``"-"``/``"0-0"``: the oldest; excluded unless
    ``inclusive``) to ``upto`` (included; ``"+"``: the newest), oldest first: one page of a replay."""
    low = "-" if start in ("-", START) else start if inclusive else "(" + start
    return _entries(client.xrange(key, min=low, max=upto, count=limit))


def first_entry(client: redis.Redis, key: str) -> tuple[str, bytes] | None:
    found = _entries(client.xrange(key, min="-", max="+", count=1))
    return found[0] if found else None


def last_entry(client: redis.Redis, key: str) -> tuple[str, bytes] | None:
    found = _entries(client.xrevrange(key, max="+", min="-", count=1))
    return found[0] if found else None


def entry_at(client: redis.Redis, key: str, position: str) -> tuple[str, bytes] | None:
    found = _entries(client.xrange(key, min=position, max=position, count=1))
    return found[0] if found else None


def resume_decision(client: redis.Redis, key: str, position: str, policy: HistoryPolicy) -> ResumeDecision:
    """Where a subscriber resuming after ``position`` restarts (:func:`.resume.decide_resume`)."""
    first = last = None
    if position != START:
        first_found, last_found = first_entry(client, key), last_entry(client, key)
        first = first_found[0] if first_found else None
        last = last_found[0] if last_found else None
    return decide_resume(position, first, last, policy.replay)


def window_start(client: redis.Redis, key: str, window: HistoryWindow, upto: str, page: int) -> str | None:
    """The oldest position of a ``history`` window ending at ``upto``, found by reading the stream
    backwards a page at a time and keeping only the ids; None when the window is empty."""
    low = "-" if window.oldest_ms is None else f"{max(window.oldest_ms, 0)}-0"
    high, remaining, oldest = upto, window.limit, None
    while remaining > 0:
        wanted = min(page, remaining)
        found = client.xrevrange(key, max=high, min=low, count=wanted)
        if not found:
            break
        oldest = found[-1][0].decode()
        remaining -= len(found)
        if len(found) < wanted:
            break
        high = "(" + oldest
    return oldest


def resume_plan(
    client: redis.Redis, key: str, position: str, policy: HistoryPolicy, limit: int
) -> tuple[list[tuple[str, bytes]], str | None]:
    """What a subscriber resuming after ``position`` must be sent, and whether the position expired
    (see :func:`.resume.decide_resume`): returns (entries, expired_at)."""
    first = last = None
    if position != START:
        first_found, last_found = first_entry(client, key), last_entry(client, key)
        first = first_found[0] if first_found else None
        last = last_found[0] if last_found else None
    decision = decide_resume(position, first, last, policy.replay)
    entries = entries_after(client, key, decision.replay_after, limit) if decision.replay_after else []
    return entries, decision.expired_at


def recent_entries(client: redis.Redis, key: str, window: HistoryWindow) -> list[tuple[str, bytes]]:
    """The entries of a ``history`` window (:func:`.resume.history_window`), oldest first: one XREVRANGE
    from the tail down to the window's oldest millisecond, at most ``limit`` entries."""
    low = "-" if window.oldest_ms is None else f"{max(window.oldest_ms, 0)}-0"
    found = _entries(client.xrevrange(key, max="+", min=low, count=window.limit))
    found.reverse()
    return found
