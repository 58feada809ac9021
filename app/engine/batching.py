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


class NotReplicated(Exception):
    """Passed to a replicated publish's callback when the master holds it but ``WAIT`` did not see enough
    replicas take it in time (``confirmed`` is how many did; -1 when WAIT itself failed)."""

    def __init__(self, confirmed: int, wanted: int) -> None:
        super().__init__(f"{confirmed} of {wanted} replica(s) confirmed")
        self.confirmed = confirmed
        self.wanted = wanted


class _WaitGroup:
    """Replicated publishes sharing one ``WAIT <replicas> <timeout>`` that follows them in the pipeline:
    WAIT covers every write the connection made before it, so one per batch answers them all (one round
    trip per batch, not per message). Each member's own reply is kept until WAIT's arrives."""

    __slots__ = ("entry", "key", "members")

    def __init__(self, replicas: int, timeout_ms: int) -> None:
        self.key = (replicas, timeout_ms)
        self.members: list[list[Any]] = []  # [callback, its EVALSHA reply]
        self.entry: Command = (b"*3\r\n$4\r\nWAIT\r\n" + _bulk(replicas) + _bulk(timeout_ms), self._on_wait)

    def member(self, callback: Callback) -> Callback:
        slot = [callback, UNAVAILABLE]
        self.members.append(slot)

        def keep(reply: Any) -> None:
            slot[1] = reply

        return keep

    def _on_wait(self, reply: Any) -> None:
        wanted = self.key[0]
        for callback, stored in self.members:
            if not isinstance(stored, bytes):
                outcome = stored  # the publish itself failed: its own error
            elif reply is UNAVAILABLE:
                outcome = UNAVAILABLE  # the master has it; whether a replica does is unknown
            elif isinstance(reply, int) and reply >= wanted:
                outcome = stored
            else:
                outcome = NotReplicated(reply if isinstance(reply, int) else -1, wanted)
            _safe_call(callback, outcome)


def _bulk(number: int) -> bytes:
    text = b"%d" % number
    return b"$%d\r\n%s\r\n" % (len(text), text)


class PublishBatches:
    """The queue, the batch in flight, and the rules between them, for one publisher connection."""

    __slots__ = ("_wait_group", "answered", "batch_max", "in_flight", "open", "queue", "send")

    def __init__(self, batch_max: int, send: Callable[[list[Command]], None]) -> None:
        self.batch_max = batch_max
        self.send = send  # puts a batch on the wire (the socket side)
        self.open = False  # accepting publishes: connected, not stopping
        self.queue: deque[Command] = deque()  # the next batch
        self.in_flight: list[Command] = []  # sent, awaiting replies; empty when idle
        self.answered = 0  # replies of the batch in flight already handed to their callbacks
        self._wait_group: _WaitGroup | None = None  # the group whose WAIT is last in the queue, if any

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

    def submit_replicated(self, command: bytes, callback: Callback, replicas: int, timeout_ms: int) -> None:
        """Like :meth:`submit`, but ``callback`` gets the reply only once ``WAIT`` saw ``replicas`` replicas
        take it within ``timeout_ms`` (else a :class:`NotReplicated`). Publishes queued together share the
        WAIT that closes the queue: it stays last, and each new member goes in just before it."""
        if not self.open:
            callback(UNAVAILABLE)
            return
        queue = self.queue
        group = self._wait_group
        if group is not None and group.key == (replicas, timeout_ms) and queue and queue[-1] is group.entry:
            queue.insert(len(queue) - 1, (command, group.member(callback)))
            return
        group = self._wait_group = _WaitGroup(replicas, timeout_ms)
        first = (command, group.member(callback))
        if self.in_flight or queue:
            queue.append(first)
            queue.append(group.entry)
        else:
            self._start([first, group.entry])

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

    def answer_replies(self, replies: list[Any], fix: Callable[[bytes, Any], Any] | None = None) -> bool:
        """The next ``replies`` of the batch in flight, in order: each goes to its command's callback, through
        ``fix(command, reply)`` first when given (which may replace it). True once the whole batch is
        answered; ValueError when there are more replies than commands awaiting them (the connection is out
        of step). ``answered`` moves on before each callback runs, so a callback sees its command answered."""
        in_flight = self.in_flight
        answered = self.answered
        if answered + len(replies) > len(in_flight):
            raise ValueError("more replies than commands in flight")
        for reply in replies:
            command, callback = in_flight[answered]
            answered += 1
            self.answered = answered
            _safe_call(callback, reply if fix is None else fix(command, reply))
        return answered >= len(in_flight)

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
