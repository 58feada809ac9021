"""``ASK`` redirections of one cluster master: publishes sent there once each, preceded by ``ASKING``.

While a slot migrates, a key already moved is answered ``-ASK slot host:port`` by the old owner: that one
command must go to the target, right after ``ASKING`` on the same connection. Those two commands cannot
share the target's publish pipeline (another greenlet's publish could come between them), so they go on
a side connection, one at a time and in order: a migration is short and rare, a round trip each is fine.
A replicated publish (durability ``replicated``) takes its ``WAIT`` along on that connection: WAIT counts
the replicas that have the writes *of the connection it is sent on*.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import gevent
from gevent.event import Event

from ..resp import RedisAddress, RedisUnavailable, ReplyError, RespConnection, encode_command
from .batching import UNAVAILABLE, Callback, NotReplicated

log = logging.getLogger(__name__)

ASKING = encode_command(b"ASKING")


class AskingSender:
    def __init__(self, name: str, address: RedisAddress, scripts: dict[str, str], timeout: float) -> None:
        self.name = name
        self.address = address
        self.scripts = scripts
        self.timeout = timeout
        self.queue: deque[tuple[bytes, Callback, tuple[int, int] | None]] = deque()
        self._wake = Event()
        self._greenlet: gevent.Greenlet | None = None

    def submit(self, command: bytes, callback: Callback, wait: tuple[int, int] | None = None) -> None:
        """Send ``command`` after ``ASKING``; with ``wait`` = (replicas, timeout_ms), followed by ``WAIT``."""
        self.queue.append((command, callback, wait))
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)
        self._wake.set()

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        while self.queue:
            _command, callback, _wait = self.queue.popleft()
            callback(UNAVAILABLE)

    def _run(self) -> None:
        conn: RespConnection | None = None
        while True:
            if not self.queue:
                if conn is not None:
                    conn.close()  # migrations are rare: no idle connection kept
                    conn = None
                self._wake.clear()
                self._wake.wait()
                continue
            command, callback, wait = self.queue.popleft()
            # WAIT blocks up to its own timeout: the answer may take that much longer.
            timeout = self.timeout + (wait[1] / 1000 if wait else 0)
            try:
                with gevent.Timeout(timeout, RedisUnavailable("no answer to an ASK redirection")):
                    if conn is None:
                        conn = RespConnection(self.address)
                        conn.connect()
                        for source in self.scripts.values():
                            conn.call("SCRIPT", "LOAD", source)
                    reply = self._asking(conn, command, wait)
            except RedisUnavailable as exc:
                log.warning("shard %s: ASK redirection failed: %s", self.name, exc)
                if conn is not None:
                    conn.close()
                conn = None
                reply = UNAVAILABLE
            try:
                callback(reply)
            except Exception:
                log.exception("publish callback failed")

    @staticmethod
    def _asking(conn: RespConnection, command: bytes, wait: tuple[int, int] | None) -> Any:
        if wait is None:
            conn.send(ASKING + command)
        else:
            conn.send(ASKING + command + encode_command(b"WAIT", wait[0], wait[1]))
        asked = conn.read_reply()
        reply = conn.read_reply()
        if isinstance(asked, ReplyError):
            if wait is not None:
                conn.read_reply()
            return asked
        if wait is None:
            return reply
        confirmed = conn.read_reply()
        if not isinstance(reply, bytes):
            return reply  # the publish itself failed: its own error
        if isinstance(confirmed, int) and confirmed >= wait[0]:
            return reply
        return NotReplicated(confirmed if isinstance(confirmed, int) else -1, wait[0])
