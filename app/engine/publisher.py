"""One pipelined publisher per shard per process: the socket side of :mod:`.batching`.

When nothing is in flight, a publish is written by the greenlet that made it, on the spot: the latency of
a lone publish includes no hand-over to another greenlet. Each command's callback runs only once Redis has
answered it, which is what lets the connection send ``rtm/publish/ok`` only for data Redis really holds.

A shard that stops answering (a frozen or partitioned node keeps its TCP connection open) must not hold
publishes forever: a batch unanswered for ``reply_timeout`` seconds fails with ``shard_unavailable`` and
the connection is rebuilt, and connecting (handshake and SCRIPT LOAD included) is bounded the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import Event

from ..resp import RedisAddress, RedisUnavailable, ReplyError, RespConnection
from .backoff import Backoff, OutageLog
from .batching import UNAVAILABLE, Command, PublishBatches, ShardUnavailable

if TYPE_CHECKING:
    from .links import ShardEvents

log = logging.getLogger(__name__)


class ShardPublisher:
    def __init__(
        self,
        name: str,
        address: RedisAddress,
        scripts: dict[str, str],
        batch_max: int = 2000,
        on_batch: Callable[[int, float], None] | None = None,
        reply_timeout: float = 12.5,
        events: ShardEvents | None = None,
    ) -> None:
        self.name = name
        self.address = address
        self.reply_timeout = reply_timeout
        self.available = False
        # Lua source by name; their SHA1s are filled in at every (re)connect by SCRIPT LOAD.
        self.scripts = scripts
        self.shas: dict[str, bytes] = {}
        self.batches = PublishBatches(batch_max, self._send_batch)
        # Send one RESP command; ``callback(reply)`` gets the reply, a ReplyError or UNAVAILABLE. The
        # batching's own method: a publish costs no call of this class.
        self.submit = self.batches.submit
        # The same for a publish acknowledged only once replicas hold it (durability ``replicated``).
        self.submit_replicated = self.batches.submit_replicated
        self._on_batch = on_batch  # (batch size, seconds on the wire), for metrics
        self._events = events  # on_batch_end after a batch's callbacks ran
        self._batch_started = 0.0  # perf_counter() when the batch in flight was sent
        self._batch_sent_at: float | None = None  # monotonic time the batch in flight was sent
        self._conn: RespConnection | None = None
        self._idle = Event()
        self._idle.set()
        self._connected = Event()
        self._greenlet: gevent.Greenlet | None = None
        self._stopping = False
        self._backoff = Backoff()  # between reconnects; cut short by retarget

    # ------------------------------------------------------------------ API
    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def drain(self, timeout: float) -> bool:
        """Wait until everything queued has been answered (graceful shutdown)."""
        if self.batches.idle:
            return True
        return self._idle.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self.drain(timeout)
        self._stopping = True
        self.batches.open = False
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def retarget(self, address: RedisAddress) -> None:
        """Connect to ``address`` from now on (the shard's master moved): the current connection is dropped,
        what it had in flight fails with ``shard_unavailable``, and the next connect goes to ``address``."""
        self.address = address
        self._backoff.retry_now()  # a wait for the old address ends: connect to the new one at once
        conn = self._conn
        if conn is not None:
            conn.close()  # the pump, idle or not, is waiting on it: its read fails and it reconnects

    @property
    def batch_max(self) -> int:
        return self.batches.batch_max

    @property
    def queued(self) -> int:
        return self.batches.queued

    # ------------------------------------------------------------------ the greenlet
    def _run(self) -> None:
        backoff = self._backoff
        outage = OutageLog(f"shard {self.name}: publisher cannot connect", log)
        while not self._stopping:
            conn = RespConnection(self.address)
            try:
                with gevent.Timeout(self.reply_timeout, RedisUnavailable("no answer while connecting")):
                    conn.connect()
                    self._load_scripts(conn)
            except (RedisUnavailable, ReplyError) as exc:
                outage.failed(exc)
                conn.close()
                backoff.wait()
                continue
            outage.recovered()
            backoff.reset()
            self._conn = conn
            self.available = self.batches.open = not self._stopping
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
                backoff.wait()
            finally:
                watchdog.kill(block=False)
                self._conn = None
                self.available = self.batches.open = False
                self._connected.clear()
                conn.close()
                self._batch_sent_at = None
                self.batches.fail_all()
                self._idle.set()

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

    def _send_batch(self, batch: list[Command]) -> None:
        """Put ``batch`` on the wire; the pump reads its replies. Called by the batching, in the pump or in
        the caller of :meth:`submit` when nothing was in flight."""
        conn = self._conn
        self._idle.clear()
        self._batch_started = time.perf_counter()
        self._batch_sent_at = time.monotonic()
        if conn is None:
            return  # lost meanwhile: the pump fails the batch
        try:
            conn.send(b"".join([command for command, _ in batch]) if len(batch) > 1 else batch[0][0])
        except RedisUnavailable:
            conn.close()  # the pump's next read fails, and the batch with it

    def _pump(self, conn: RespConnection) -> None:
        batches = self.batches

        def fix(command: bytes, reply: Any) -> Any:
            if isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT"):
                return self._retry_noscript(conn, command)
            return reply

        while True:
            if not batches.in_flight and not batches.next_batch():
                self._idle.set()
                # Idle, the pump waits on the socket itself: a submit sends its batch on the spot, and what
                # wakes the pump is Redis's answer (no Event hand-over, no futile recv that fails with
                # EAGAIN first). A closed connection (retarget, watchdog) ends the wait with an error.
                conn.wait_readable()
            # Every complete reply of a read is answered at once (hiredis parses them in C).
            try:
                while not batches.answer_replies(conn.read_available(), fix):
                    pass
            except ValueError as exc:
                raise RedisUnavailable(str(exc)) from None
            count = batches.batch_done()
            self._batch_sent_at = None
            if self._on_batch is not None:
                self._on_batch(count, time.perf_counter() - self._batch_started)
            if self._events is not None:
                self._events.on_batch_end()

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


__all__ = ["UNAVAILABLE", "ShardPublisher", "ShardUnavailable"]
