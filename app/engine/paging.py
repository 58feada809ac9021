"""History replays read in bounded pages (issue 14: four 108-byte subscribes from ``0-0`` once raised a
process's RSS by 468 MB, since each loaded the whole retained history, and its serialised copy, at once).

A replay reads :data:`PAGE_ENTRIES` entries at a time (fewer when they are big: a page aims at
:data:`PAGE_BYTES`), hands each page to the subscription as it comes, and before reading the next one waits
while the client still has more than :data:`PACE_BYTES` queued: what one replay holds is a page and the
client's send queue, whatever the size of the history, and a client reading slowly slows its own replay
instead of being disconnected as a slow consumer. The replay ends at the channel's tail read at subscribe
time (``upto``): everything after it reached the subscription live, held until the switch-over, where
:meth:`app.subscription.Subscription.finish_sync` merges the last page with it (no gap, no duplicate).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gevent
import redis

from .router import prepare
from .streams import entries_between

if TYPE_CHECKING:
    from ..subscription import Subscription

PAGE_ENTRIES = 200
PAGE_BYTES = 1 << 20
PACE_BYTES = 1 << 20
PACE_SLEEP = 0.005  # seconds between checks of a client's queue while it drains


def next_page_size(entries: list[tuple[str, bytes]], size: int) -> int:
    """The count of the next page: a page of big entries shrinks the next one towards PAGE_BYTES."""
    total = sum(len(message) for _, message in entries)
    if total <= PAGE_BYTES:
        return min(PAGE_ENTRIES, size * 2) if total * 2 <= PAGE_BYTES else size
    return max(1, size * PAGE_BYTES // total)


def replay_pages(client: redis.Redis, sub: Subscription, start: str, inclusive: bool, upto: str) -> None:
    """Send ``sub`` the entries from ``start`` (excluded unless ``inclusive``; ``"-"``: the oldest) to
    ``upto`` (included; ``"+"``: the newest), page by page, then switch it to live. Raises RedisError; the
    pages already sent stay sent, and the caller tells the client where delivery stands."""
    size = PAGE_ENTRIES
    while True:
        entries = entries_between(client, sub.key, start, inclusive, upto, size)
        if sub.syncing is None:
            return  # unsubscribed (or the connection went) while the page was read
        if len(entries) < size or entries[-1][0] == upto:
            sub.finish_sync(prepare(sub, entries))
            return
        sub.replay_page(prepare(sub, entries))
        start, inclusive = entries[-1][0], False
        size = next_page_size(entries, size)
        del entries
        _wait_for_client(sub)


def _wait_for_client(sub: Subscription) -> None:
    sink = sub.sink
    while getattr(sink, "queued_bytes", 0) > PACE_BYTES:
        if getattr(sink, "closing", False) or sub.syncing is None:
            return
        gevent.sleep(PACE_SLEEP)
