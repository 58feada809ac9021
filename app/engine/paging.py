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

from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
import redis

from ..positions import START, parse_position
from .router import prepare
from .streams import entries_between, first_entry

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


# Told that the stream was trimmed past what a replay had delivered: (subscription, the last position it
# delivered or resumed after, where delivery restarts), as a resume from an expired position is (PROTOCOL §7).
Expired = Callable[["Subscription", str, str], None]


def replay_pages(
    client: redis.Redis, sub: Subscription, start: str, inclusive: bool, upto: str, expired: Expired
) -> None:
    """Send ``sub`` the entries from ``start`` (excluded unless ``inclusive``; ``"-"``: the oldest) to
    ``upto`` (included; ``"+"``: the newest), page by page, then switch it to live. Raises RedisError; the
    pages already sent stay sent, and the caller tells the client where delivery stands.

    Each page reads one entry more than it sends: the next page must start with that entry. Streams are
    only trimmed from their oldest end, so when it is gone, everything between the last entry sent and the
    new oldest one went too (trimmed by count or age, or the channel deleted, while a slow client paced
    the replay): ``expired`` tells the client, instead of a silent gap, and the replay goes on from there.
    (How many went is not known: stream ids are not dense.) A resume after a position reads that position
    too: found, nothing after it was trimmed since the caller looked; else the stream's oldest entry must
    still be at or before it, as :func:`.resume.decide_resume` requires."""
    size = PAGE_ENTRIES
    resumed_after = start if not inclusive and start not in ("-", START) else None
    expected = start if inclusive and start not in ("-", START) else None
    delivered = None  # the last position sent
    inclusive = inclusive or resumed_after is not None
    while True:
        extra = 2 if resumed_after is not None else 1  # the first page of a resume reads its position too
        entries = entries_between(client, sub.key, start, inclusive, upto, size + extra)
        if sub.syncing is None:
            return  # unsubscribed (or the connection went) while the page was read
        gap = expected is not None and (not entries or entries[0][0] != expected)
        if resumed_after is not None:
            if entries and entries[0][0] == resumed_after:
                entries.pop(0)
            else:
                gap = _trimmed_past(client, sub.key, resumed_after)
            expected, resumed_after = resumed_after, None
        if gap:
            restart_at = entries[0][0] if entries else upto if upto != "+" else expected
            expired(sub, delivered or expected, restart_at)
        if len(entries) <= size:
            sub.finish_sync(prepare(sub, entries))
            return
        following = entries.pop()[0]
        sub.replay_page(prepare(sub, entries))
        delivered = entries[-1][0]
        start, inclusive, expected = following, True, following
        size = next_page_size(entries, size)
        del entries
        _wait_for_client(sub)


def _trimmed_past(client: redis.Redis, key: str, position: str) -> bool:
    """Whether the stream's oldest entry is now after ``position`` (or the stream is empty)."""
    oldest = first_entry(client, key)
    return oldest is None or (parse_position(oldest[0]) or (0, 0)) > (parse_position(position) or (0, 0))


def _wait_for_client(sub: Subscription) -> None:
    sink = sub.sink
    while getattr(sink, "queued_bytes", 0) > PACE_BYTES:
        if getattr(sink, "closing", False) or sub.syncing is None:
            return
        gevent.sleep(PACE_SLEEP)
