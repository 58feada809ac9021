"""Natural batching of a shard's publishes, without I/O: what to send now, what waits, who gets what.

Publishes queue up while the previous batch is on the wire; the next batch takes everything that queued
(up to ``batch_max``). A lone publish therefore goes out at once, and under load batches grow by themselves:
no timer, no fixed sleep. When nothing is in flight, a publish is handed to ``send`` by the caller of
:meth:`PublishBatches.submit`, on the spot. Replies come back in order, so the n-th reply belongs to the
n-th command of the batch in flight. When the connection is lost, what was sent and not answered, and
what was queued behind it, fail: the client gets an error, never a false ok, nor no answer at all.

The socket side (:class:`.publisher.ShardPublisher`) sends the batches it is handed and feeds the replies
it reads to :meth:`PublishBatches.answer`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Callback = Callable[[Any], None]
Command = tuple[bytes, Callback]  # one RESP command, and who gets its reply


class ShardUnavailable(Exception):
    """Passed to callbacks whose command could not be written to, or answered by, the shard."""


UNAVAILABLE = ShardUnavailable("shard unavailable")


class PublishBatches:
    """The queue, the batch in flight, and the rules between them, for one publisher connection."""

    __slots__ = ("answered", "batch_max", "in_flight", "open", "queue", "send")

    def __init__(self, batch_max: int, send: Callable[[list[Command]], None]) -> None:
        self.batch_max = batch_max
        self.send = send  # puts a batch on the wire (the socket side)
        self.open = False  # accepting publishes: connected, not stopping
        self.queue: deque[Command] = deque()  # the next batch
        self.in_flight: list[Command] = []  # sent, awaiting replies; empty when idle
        self.answered = 0  # replies of the batch in flight already handed to their callbacks

    def submit(self, command: bytes, callback: Callback) -> None:
        """One command; ``callback(reply)`` gets the reply, a ReplyError or :data:`UNAVAILABLE`."""
        if not self.open:
            callback(UNAVAILABLE)
        elif self.in_flight or self.queue:
            self.queue.append((command, callback))  # goes with the next batch
        else:  # the pipe is idle: no reason to wait (_start inlined: this is every lone publish)
            batch = self.in_flight = [(command, callback)]
            self.answered = 0
            self.send(batch)

    def next_batch(self) -> bool:
        """With nothing in flight, send what queued (at most ``batch_max``); False when nothing did."""
        queue = self.queue
        if not queue:
            return False
        if len(queue) <= self.batch_max:  # the usual case: take everything at once
            batch = list(queue)
            queue.clear()
        else:
            batch = [queue.popleft() for _ in range(self.batch_max)]
        self._start(batch)
        return True

    def _start(self, batch: list[Command]) -> None:
        self.in_flight = batch
        self.answered = 0
        self.send(batch)

    def unanswered(self) -> list[Command]:
        """The commands of the batch in flight whose replies are still due, in order."""
        return self.in_flight[self.answered :]

    def answer(self, callback: Callback, reply: Any) -> None:
        """The next reply of the batch in flight, for ``callback`` (the one :meth:`unanswered` named)."""
        self.answered += 1
        _safe_call(callback, reply)

    def batch_done(self) -> int:
        """Every reply of the batch in flight arrived; returns its size."""
        count = len(self.in_flight)
        self.in_flight = []
        self.answered = 0
        return count

    def fail_all(self) -> None:
        """The connection is gone: the unanswered (sent, maybe stored, maybe not) and the queued fail."""
        self.open = False
        batch, answered = self.in_flight, self.answered
        self.in_flight, self.answered = [], 0
        for _command, callback in batch[answered:]:
            _safe_call(callback, UNAVAILABLE)
        queue = self.queue
        while queue:
            _command, callback = queue.popleft()
            _safe_call(callback, UNAVAILABLE)

    @property
    def idle(self) -> bool:
        return not self.in_flight and not self.queue

    @property
    def queued(self) -> int:
        """Publishes accepted and not answered yet."""
        return len(self.queue) + len(self.in_flight) - self.answered


def _safe_call(callback: Callback, reply: Any) -> None:
    try:
        callback(reply)
    except Exception:
        log.exception("publish callback failed")
