"""Where a subscriber resuming from a position restarts (PROTOCOL §7): a pure decision, no I/O.

Given the oldest and newest retained positions of a channel and the position a client asks to resume
after, decide what to replay and whether the asked position expired. The Redis engine reads ``first`` and
``last`` from the stream, the in-memory engine from its list; both then act on the same decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..positions import START, parse_position


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
