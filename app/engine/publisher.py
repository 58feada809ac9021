"""One pipelined publisher per shard per process, with natural batching.

Publishes queue up while the previous batch is on the wire; the next batch takes everything that queued
(up to ``batch_max``). A lone publish therefore goes out at once, and under load batches grow by themselves:
no timer, no fixed sleep. When nothing is in flight, the publish is written by the greenlet that made it,
on the spot: the latency of a lone publish includes no hand-over to another greenlet. Each command's
callback runs only once Redis has answered it, which is what lets the connection send ``rtm/publish/ok``
only for data Redis really holds.

A shard that stops answering (a frozen or partitioned node keeps its TCP connection open) must not hold
publishes forever: a batch unanswered for ``reply_timeout`` seconds fails with ``shard_unavailable`` and
the connection is rebuilt, and connecting (handshake and SCRIPT LOAD included) is bounded the same way.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event

from ..resp import RedisAddress, RedisUnavailable, ReplyError, RespConnection, encode_command

log = logging.getLogger(__name__)

Callback = Callable[[Any], None]


class ShardUnavailable(Exception):
    """Passed to callbacks whose command could not be written to, or answered by, the shard."""


UNAVAILABLE = ShardUnavailable("shard unavailable")


class ShardPublisher:
    def __init__(
        self,
        name: str,
        address: RedisAddress,
        scripts: dict[str, str],
        batch_max: int = 2000,
        on_batch: Callable[[int, float], None] | None = None,
        reply_timeout: float = 12.5,
    ) -> None:
        self.name = name
        self.address = address
        self.batch_max = batch_max
        self.reply_timeout = reply_timeout
        self.available = False
        # Lua source by name; their SHA1s are filled in at every (re)connect by SCRIPT LOAD.
        self.scripts = scripts
        self.shas: dict[str, bytes] = {}
        self._on_batch = on_batch  # (batch size, seconds on the wire), for metrics
        self._queue: deque[tuple[bytes, Callback]] = deque()  # the next batch
        self._batch: list[tuple[bytes, Callback]] = []  # sent, awaiting replies; empty when idle
        self._answered = 0  # replies of the batch in flight already handed to their callbacks
        self._batch_started = 0.0  # perf_counter() when the batch in flight was sent
        self._batch_sent_at: float | None = None  # monotonic time the batch in flight was sent
        self._conn: RespConnection | None = None
        self.on_batch_end: Callable[[], None] | None = None  # after a batch's callbacks ran
        self._wake = Event()
        self._idle = Event()
        self._idle.set()
        self._connected = Event()
        self._greenlet: gevent.Greenlet | None = None
        self._stopping = False

    # ------------------------------------------------------------------ API
    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def submit(self, command: bytes, callback: Callback) -> None:
        """Send one RESP command; ``callback(reply)`` gets the reply, a ReplyError or UNAVAILABLE."""
        if not self.available or self._stopping:
            callback(UNAVAILABLE)
            return
        self._idle.clear()
        if self._batch or self._queue or self._conn is None:
            self._queue.append((command, callback))  # goes with the next batch
        else:
            self._send_batch([(command, callback)])  # the pipe is idle: no reason to wait

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def drain(self, timeout: float) -> bool:
        """Wait until everything queued has been answered (graceful shutdown)."""
        return self._idle.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self.drain(timeout)
        self._stopping = True
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    @property
    def queued(self) -> int:
        return len(self._queue) + len(self._batch) - self._answered

    # ------------------------------------------------------------------ the greenlet
    def _run(self) -> None:
        delay = 0.05
        outage = OutageLog(f"shard {self.name}: publisher cannot connect")
        while not self._stopping:
            conn = RespConnection(self.address)
            try:
                with gevent.Timeout(self.reply_timeout, RedisUnavailable("no answer while connecting")):
                    conn.connect()
                    self._load_scripts(conn)
            except (RedisUnavailable, ReplyError) as exc:
                outage.failed(exc)
                conn.close()
                gevent.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            outage.recovered()
            delay = 0.05
            self.available = True
            self._conn = conn
            self._connected.set()
            log.info("shard %s: publisher connected", self.name)
            watchdog = gevent.spawn(self._watch, conn)
            try:
                self._pump(conn)
            except RedisUnavailable as exc:
                log.warning("shard %s: publisher lost its connection: %s", self.name, exc)
            except Exception:
                # A bug must cost a reconnect (queued publishes fail), never the shard's only publisher.
                log.exception("shard %s: publisher failed; reconnecting", self.name)
                gevent.sleep(delay)
            finally:
                watchdog.kill(block=False)
                self._conn = None
                self.available = False
                self._connected.clear()
                conn.close()
                self._fail_in_flight()
                self._fail_queued()

    def _watch(self, conn: RespConnection) -> None:
        """Bound the wait for a batch's replies. One greenlet checking a timestamp, rather than a timeout on
        the socket: a socket timeout costs a timer on every send and every wait of the hot path."""
        period = self.reply_timeout / 4
        while True:
            gevent.sleep(period)
            sent_at = self._batch_sent_at
            if sent_at is not None and time.monotonic() - sent_at > self.reply_timeout:
                log.warning(
                    "shard %s: no reply within %.1f s; dropping the connection", self.name, self.reply_timeout
                )
                conn.close()  # the pump's wait fails, its batch gets shard_unavailable, and it reconnects
                return

    def _load_scripts(self, conn: RespConnection) -> None:
        for name, source in self.scripts.items():
            sha = conn.call("SCRIPT", "LOAD", source)
            if isinstance(sha, ReplyError):
                raise sha
            self.shas[name] = sha

    def _send_batch(self, batch: list[tuple[bytes, Callback]]) -> None:
        """Put ``batch`` on the wire; the pump reads its replies. Runs in the pump, or in the caller of
        :meth:`submit` when nothing was in flight."""
        conn = self._conn
        self._batch = batch
        self._answered = 0
        self._batch_started = time.perf_counter()
        self._batch_sent_at = time.monotonic()
        if not self._wake.is_set():
            self._wake.set()  # the pump goes to read the replies
        if conn is None:
            return  # lost meanwhile: the pump fails the batch
        try:
            conn.send(b"".join([command for command, _ in batch]) if len(batch) > 1 else batch[0][0])
        except RedisUnavailable:
            conn.close()  # the pump's next read fails, and the batch with it

    def _pump(self, conn: RespConnection) -> None:
        queue = self._queue
        while True:
            if not self._batch:
                if not queue:
                    self._idle.set()
                    self._wake.clear()
                    self._wake.wait()  # a submit sends its batch itself and wakes us to read the replies
                    continue
                if len(queue) <= self.batch_max:  # the usual case: take everything at once
                    batch = list(queue)
                    queue.clear()
                else:
                    batch = [queue.popleft() for _ in range(self.batch_max)]
                self._send_batch(batch)
            batch = self._batch
            for command, callback in batch[self._answered :]:
                reply = conn.read_reply()
                if isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT"):
                    reply = self._retry_noscript(conn, command)
                self._answered += 1
                _safe_call(callback, reply)
            count = len(batch)
            self._batch = []
            self._answered = 0
            self._batch_sent_at = None
            if self._on_batch is not None:
                self._on_batch(count, time.perf_counter() - self._batch_started)
            if self.on_batch_end is not None:
                self.on_batch_end()

    def _retry_noscript(self, conn: RespConnection, command: bytes) -> Any:
        """Someone ran SCRIPT FLUSH: load the scripts again and resend this one command."""
        log.warning("shard %s: scripts were flushed; reloading", self.name)
        # Replies of the rest of the batch are still due on this connection, so the reload goes on a
        # separate connection. A script's SHA1 depends only on its source: the command is resent as is.
        side = RespConnection(self.address)
        try:
            with gevent.Timeout(self.reply_timeout, RedisUnavailable("no answer while reloading scripts")):
                side.connect()
                self._load_scripts(side)
                side.send(command)
                return side.read_reply()
        finally:
            side.close()

    def _fail_in_flight(self) -> None:
        """What was sent but not answered fails: it may or may not be in Redis, and the client gets an
        error, never a false ok (nor no answer at all)."""
        batch, answered = self._batch, self._answered
        self._batch, self._answered, self._batch_sent_at = [], 0, None
        for _command, callback in batch[answered:]:
            _safe_call(callback, UNAVAILABLE)

    def _fail_queued(self) -> None:
        while self._queue:
            _command, callback = self._queue.popleft()
            _safe_call(callback, UNAVAILABLE)
        self._idle.set()


class OutageLog:
    """A shard that stays down is retried every two seconds: log the first failure of an outage and then
    one line a minute, not one line per attempt."""

    def __init__(self, what: str, logger: logging.Logger = log, every: float = 60.0) -> None:
        self.what = what
        self.log = logger
        self.every = every
        self.failures = 0
        self._logged_at = 0.0

    def failed(self, exc: Exception) -> None:
        self.failures += 1
        now = time.monotonic()
        if self.failures == 1 or now - self._logged_at >= self.every:
            self._logged_at = now
            self.log.warning("%s (attempt %d): %s", self.what, self.failures, exc)

    def recovered(self) -> None:
        self.failures = 0


def _safe_call(callback: Callback, reply: Any) -> None:
    try:
        callback(reply)
    except Exception:
        log.exception("publish callback failed")


__all__ = ["UNAVAILABLE", "OutageLog", "ShardPublisher", "ShardUnavailable", "encode_command"]
