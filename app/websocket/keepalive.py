"""Keepalive timing of one connection, sans I/O: when to ping a quiet client, when to drop a silent one.

PROTOCOL §1 ("Better"): the server pings a connection that has been silent for ``ping_interval`` seconds
(RFC 6455 §5.5.2) and drops it when nothing at all arrives within ``ping_timeout`` seconds of that ping.
Anything heard from the client counts as a sign of life, not only the pong (§5.5.3 lets a pong answer a
ping or come unsolicited; a client busy publishing is alive however late its pong is).

:class:`Keepalive` is told when something arrived and asked, at any time, what to do now; the time is passed
in. Costs: two floats per connection.
"""

from __future__ import annotations

import enum


class KeepaliveAction(enum.Enum):
    NOTHING = "nothing"
    PING = "ping"  # send one ping now
    DROP = "drop"  # the ping went unanswered: drop the TCP connection


def poll_interval(ping_interval: float, ping_timeout: float) -> float:
    """How often a loop over many connections should poll them: a quarter of the shorter period (so a ping
    or a drop is at most that late), never more often than every 50 ms."""
    return max(0.05, min(ping_interval, ping_timeout) / 4)


class Keepalive:
    __slots__ = ("interval", "last_received", "ping_sent_at", "timeout")

    def __init__(self, interval: float, timeout: float, now: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self.last_received = now  # the connection opening counts as hearing from the client
        self.ping_sent_at: float | None = None

    @property
    def ping_outstanding(self) -> bool:
        return self.ping_sent_at is not None

    def received(self, now: float) -> None:
        """Something arrived from the client (a frame of any kind, or a part of one)."""
        self.last_received = now
        self.ping_sent_at = None

    def poll(self, now: float) -> KeepaliveAction:
        """What to do at ``now``: ping once after ``interval`` of silence, drop after ``timeout`` more
        without a word; PING is answered once per silence, DROP until something arrives."""
        if self.ping_sent_at is not None:
            return (
                KeepaliveAction.DROP if now - self.ping_sent_at >= self.timeout else KeepaliveAction.NOTHING
            )
        if now - self.last_received >= self.interval:
            self.ping_sent_at = now
            return KeepaliveAction.PING
        return KeepaliveAction.NOTHING

    def next_due(self) -> float:
        """The earliest time :meth:`poll` can answer something other than NOTHING (for a timer)."""
        if self.ping_sent_at is not None:
            return self.ping_sent_at + self.timeout
        return self.last_received + self.interval
