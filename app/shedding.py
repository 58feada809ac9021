"""What a connection over its send-queue limit sheds before it gives up on the client (PROTOCOL §7). No I/O.

The send queue holds framed PDUs; each push is queued with the subscription it belongs to (its *owner*),
everything else (replies, pings, notices, the unsent rest of a partly written write) with ``None``. At the
limit, every subscription with pushes still queued loses them: one that asked for ``fast_forward`` is told
how many messages it missed and carries on, any other is told it is out of sync and removed. The connection
is closed only when what cannot be shed still leaves the queue over its limit.

:func:`shed_queue` makes that decision on plain values; :class:`app.connection.Connection` does the I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

FAST_FORWARD = "fast_forward"  # the info of PROTOCOL §7, also the counters' reason
OUT_OF_SYNC = "out_of_sync"  # the error code of PROTOCOL §7/§9, also the counters' reason
EXPIRED_POSITION = "expired_position"  # a fast_forward resume from an expired position (counters only)

SLOW_CONSUMER_REASON = "the client reads slower than messages arrive: queued messages were dropped"


class Backlogged(Protocol):
    """What the decision reads of a subscription: whether it asked for ``fast_forward``, how many
    messages its queued pushes hold, and the position of the last of them."""

    @property
    def fast_forward(self) -> bool: ...

    @property
    def queued(self) -> int: ...

    @property
    def position(self) -> str | None: ...


Owner = TypeVar("Owner", bound=Backlogged)


@dataclass(frozen=True, slots=True)
class Shed(Generic[Owner]):
    """One subscription whose queued pushes were taken out: ``outcome`` is :data:`FAST_FORWARD` (it is
    told and carries on) or :data:`OUT_OF_SYNC` (it is told and removed); ``missed`` messages it will
    never get, the last of them at ``position``."""

    subscription: Owner
    outcome: str
    missed: int
    position: str | None
    frames: int
    size: int


@dataclass(frozen=True, slots=True)
class ShedPlan(Generic[Owner]):
    """The queue after shedding (``kept``, in their order, ``kept_size`` bytes) and who was shed, in the
    order their first push was queued."""

    kept: list[bytes]
    kept_size: int
    shed: list[Shed[Owner]]

    @property
    def missed(self) -> int:
        return sum(entry.missed for entry in self.shed)


def outcome_for(fast_forward: bool) -> str:
    """PROTOCOL §7: a ``fast_forward`` subscription is fast-forwarded, any other one is out of sync."""
    return FAST_FORWARD if fast_forward else OUT_OF_SYNC


def shed_queue(frames: Sequence[bytes], owners: Sequence[Owner | None]) -> ShedPlan[Owner]:
    """Take every push out of ``frames`` (``owners[i]`` owns ``frames[i]``, None for what is not a push).

    Runs only when a queue passed its limit, so it may walk the queue; the hot path only appends."""
    kept: list[bytes] = []
    kept_size = 0
    taken: dict[int, list[int]] = {}  # id(owner) → [frames, bytes]; owners need not be hashable
    order: list[Owner] = []
    for frame, owner in zip(frames, owners, strict=True):
        if owner is None:
            kept.append(frame)
            kept_size += len(frame)
            continue
        entry = taken.get(id(owner))
        if entry is None:
            entry = taken[id(owner)] = [0, 0]
            order.append(owner)
        entry[0] += 1
        entry[1] += len(frame)
    shed = [
        Shed(owner, outcome_for(owner.fast_forward), owner.queued, owner.position, *taken[id(owner)])
        for owner in order
    ]
    return ShedPlan(kept, kept_size, shed)


def over_limit(queued_bytes: int, limit: int) -> bool:
    """Whether what is queued is more than a client may have pending (``send_queue_max_bytes``)."""
    return queued_bytes > limit
