"""The fan-out path in one process: CPU per delivery from the router to each connection's send queue.

A :class:`app.engine.router.Router` routes ``--messages`` Pub/Sub payloads to ``--subscribers`` live
subscriptions of one channel, each on its own :class:`app.connection.Connection` (built without a socket:
only the fields the push path reads are set). Every push goes through ``Router.route_message`` →
``Subscription.deliver`` → ``Connection.send_push`` → the connection's queue, which is emptied after each
message as a flush would (the ``send`` system call itself is left out: it is the kernel's, the same for
every change of this path). With ``--sockets`` each connection writes to one end of a Unix socket pair
instead (``Connection._flush``, as the FlushQueue does after a Pub/Sub read), and the other end is drained
after each message. Process CPU time, best of ``--repeat``: steady on a loaded machine.

    python -m bench.fanout_path_bench                        # 1,000 subscribers, 256-byte messages
    python -m bench.fanout_path_bench --subscribers 100
    python -m bench.fanout_path_bench --sockets              # and the write of each push
"""

from __future__ import annotations

import argparse
import time
from collections import deque

import orjson
from gevent import socket

from app.connection import Connection
from app.engine.router import Router
from app.subscription import Subscription


class _Transport:
    """What the push path reads of a WebSocket: its socket."""

    def __init__(self, sock: socket.socket | None) -> None:
        self.socket = sock


class _Unscheduled:
    """A FlushQueue that schedules nothing: the bench flushes each connection itself."""

    def add(self, conn: Connection) -> None:
        pass


_UNSCHEDULED = _Unscheduled()


def bare_connection(sock: socket.socket | None = None) -> Connection:
    """A JSON connection with an empty send queue, writing to ``sock`` if any; flushes never scheduled."""
    conn = object.__new__(Connection)
    conn.ws = _Transport(sock)  # type: ignore[assignment]
    conn._closing = False
    conn._compress_from = None
    conn._queue = deque()
    conn._owners = deque()
    conn._epoch = 0
    conn._queued_bytes = 0
    conn._queue_limit = 1 << 40
    conn._writer = None
    conn._flush_scheduled = True  # as if a flush were already on its way: nothing else is scheduled
    conn._direct = True
    conn._flush_queue = _UNSCHEDULED  # type: ignore[assignment]
    return conn


def run(subscribers: int, messages: int, size: int, sockets: bool = False) -> float:
    """CPU seconds per delivery."""
    router = Router()
    key = "bench::fanout"
    pairs = [socket.socketpair() for _ in range(subscribers)] if sockets else []
    readers = [reader for _, reader in pairs]
    conns = [bare_connection(writer) for writer, _ in pairs] or [
        bare_connection() for _ in range(subscribers)
    ]
    for n, conn in enumerate(conns):
        router.add(Subscription(conn, f"sub-{n}", "fanout", key, None), None)
    body = orjson.dumps({"device": {"game": "bench"}, "data": {"pad": "x" * max(size - 40, 0)}})
    channel = key.encode()
    payloads = [b"1764640000000-%d %s" % (i, body) for i in range(messages)]
    started = time.process_time()
    drained = 0.0
    for payload in payloads:
        router.route_message(None, channel, payload)
        if sockets:
            for conn in conns:
                conn._flush()
            mark = time.process_time()
            for reader in readers:
                reader.recv(1 << 16)
            drained += time.process_time() - mark
            continue
        for conn in conns:  # what a flush takes off each queue
            conn._queue.clear()
            conn._owners.clear()
            conn._epoch += 1
            conn._queued_bytes = 0
    spent = time.process_time() - started - drained  # the readers' side is not the broker's
    for writer, reader in pairs:
        writer.close()
        reader.close()
    return spent / (messages * subscribers)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--size", type=int, default=256, help="approximate bytes per message")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--sockets", action="store_true", help="write each push to a socket pair")
    args = parser.parse_args()
    best = min(run(args.subscribers, args.messages, args.size, args.sockets) for _ in range(args.repeat))
    print(f"{args.subscribers} subscribers: {best * 1e9:,.0f} ns of CPU per delivery (best of {args.repeat})")


if __name__ == "__main__":
    main()
