"""The fan-out path in one process: CPU per delivery from the router to each connection's send queue.

A :class:`app.engine.router.Router` routes ``--messages`` Pub/Sub payloads to ``--subscribers`` live
subscriptions of one channel, each on its own :class:`app.connection.Connection` (built without a socket:
only the fields the push path reads are set). Every push goes through ``Router.route_message`` →
``Subscription.deliver`` → ``Connection.send_push`` → the connection's queue, which is emptied after each
message as a flush would (the ``send`` system call itself is left out: it is the kernel's, the same for
every change of this path). Process CPU time, best of ``--repeat``: steady on a loaded machine.

    python -m bench.fanout_path_bench                        # 1,000 subscribers, 256-byte messages
    python -m bench.fanout_path_bench --subscribers 100
"""

from __future__ import annotations

import argparse
import time
from collections import deque

import orjson

from app.connection import Connection
from app.engine.router import Router
from app.subscription import Subscription


def bare_connection() -> Connection:
    """A JSON connection with an empty send queue and no socket, flushes never scheduled."""
    conn = object.__new__(Connection)
    conn._closing = False
    conn._compress_from = None
    conn._queue = deque()
    conn._owners = deque()
    conn._epoch = 0
    conn._queued_bytes = 0
    conn._queue_limit = 1 << 40
    conn._writer = None
    conn._flush_scheduled = True  # as if a flush were already on its way: nothing else is scheduled
    return conn


def run(subscribers: int, messages: int, size: int) -> float:
    """CPU seconds per delivery."""
    router = Router()
    key = "bench::fanout"
    conns = [bare_connection() for _ in range(subscribers)]
    for n, conn in enumerate(conns):
        router.add(Subscription(conn, f"sub-{n}", "fanout", key, None), None)
    body = orjson.dumps({"device": {"game": "bench"}, "data": {"pad": "x" * max(size - 40, 0)}})
    channel = key.encode()
    payloads = [b"1764640000000-%d %s" % (i, body) for i in range(messages)]
    started = time.process_time()
    for payload in payloads:
        router.route_message(None, channel, payload)
        for conn in conns:  # what a flush takes off each queue
            conn._queue.clear()
            conn._owners.clear()
            conn._epoch += 1
            conn._queued_bytes = 0
    return (time.process_time() - started) / (messages * subscribers)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--size", type=int, default=256, help="approximate bytes per message")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    best = min(run(args.subscribers, args.messages, args.size) for _ in range(args.repeat))
    print(f"{args.subscribers} subscribers: {best * 1e9:,.0f} ns of CPU per delivery (best of {args.repeat})")


if __name__ == "__main__":
    main()
