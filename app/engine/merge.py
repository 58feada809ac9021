"""The switch-over from history to live, as one pure function: no gap, no duplicate (PROTOCOL §7).

Two places read a channel's history while its live messages keep arriving: a subscription resuming from
a position (:meth:`app.subscription.Subscription.finish_sync`), and a channel catching up after its live
feed was interrupted (:class:`app.engine.recovery.Recovery`). Both buffer the live messages while the
history is read, then deliver the history followed by the buffered messages the history did not contain.
Positions order the messages of one channel, so "did not contain" is "newer than the newest replayed".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from ..positions import Position

Item = TypeVar("Item")


def merge(
    replayed: Iterable[Item],
    buffered: Iterable[Item],
    key: Callable[[Item], Position | None],
    after: Position | None = None,
) -> tuple[list[Item], Position | None]:
    """What to deliver, in order, and the newest position delivered (``after`` when nothing was).

    Every replayed item is delivered: the history is the reference. A buffered item is dropped when its
    position is at or below the newest delivered so far (the history, or ``after``, had it already),
    delivered otherwise. An item whose position cannot be parsed (``key`` returns None) is delivered and
    does not move the newest position: a message is never lost to a malformed id.
    """
    to_deliver = list(replayed)
    last = after
    for item in to_deliver:
        last = key(item) or last
    for item in buffered:
        position = key(item)
        if last is not None and position is not None and position <= last:
            continue
        to_deliver.append(item)
        last = position or last
    return to_deliver, last
