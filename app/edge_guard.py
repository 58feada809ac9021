"""What one process lets an anonymous socket hold before it authenticates. No sockets, no greenlets.

A socket counts as *unauthenticated* from its accept until its WebSocket's ``auth/authenticate`` succeeds,
or until it closes: a half-sent HTTP head, an idle keep-alive connection, a plain HTTP request being served,
an upgraded WebSocket that never authenticates. Each of those is bounded in time by a deadline
(``http_head_timeout``, ``http_keepalive``, ``auth_timeout``); :class:`EdgeGuard` bounds how many there are,
per source address (``preauth_max_per_ip``) and in the whole process (``preauth_max_total``), so a flood of
them cannot take the file descriptors, gunicorn's ``worker_connections`` slots or the memory that
authenticated clients need. A socket over a cap is closed at once, before anything is read from it.

It also remembers when ``accept`` last ran out of file descriptors, for readiness (``/ready/``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import Settings

# Readiness reports descriptor exhaustion for this long after accept last failed with EMFILE/ENFILE.
FD_EXHAUSTION_MEMORY = 10.0


class PreauthTicket:
    """One admitted unauthenticated socket; released once (authenticated, or closed), whichever is first."""

    __slots__ = ("_guard", "address")

    def __init__(self, guard: EdgeGuard, address: str) -> None:
        self._guard: EdgeGuard | None = guard
        self.address = address

    def release(self) -> None:
        guard, self._guard = self._guard, None
        if guard is not None:
            guard._release(self.address)

    @property
    def held(self) -> bool:
        return self._guard is not None


class EdgeGuard:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self.per_address: Counter[str] = Counter()
        self.total = 0
        self.refused = 0  # sockets closed at accept for being over a cap, since start
        self.fd_exhausted_at: float | None = None
        # gunicorn's own ``keepalive`` replaces ``http_keepalive`` under gunicorn (app.gunicorn_worker).
        self.keepalive = settings.http_keepalive

    def admit(self, address: str) -> PreauthTicket | None:
        """A ticket for a newly accepted socket from ``address``, or None when a cap is reached."""
        per_ip, total = self.settings.preauth_max_per_ip, self.settings.preauth_max_total
        if (total and self.total >= total) or (per_ip and self.per_address[address] >= per_ip):
            self.refused += 1
            return None
        self.per_address[address] += 1
        self.total += 1
        return PreauthTicket(self, address)

    def _release(self, address: str) -> None:
        self.total -= 1
        left = self.per_address[address] - 1
        if left > 0:
            self.per_address[address] = left
        else:
            del self.per_address[address]

    # ------------------------------------------------------------------ file descriptors
    def out_of_descriptors(self) -> None:
        """accept failed with EMFILE/ENFILE just now."""
        self.fd_exhausted_at = self._clock()

    def problems(self) -> list[str]:
        """What readiness should say about the edge: [] when accept works."""
        at = self.fd_exhausted_at
        if at is not None and self._clock() - at < FD_EXHAUSTION_MEMORY:
            return [f"out of file descriptors: accept failed {self._clock() - at:.1f} s ago"]
        return []
