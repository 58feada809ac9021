"""Micro-benchmarks of single steps of the publish path, in process CPU time (steady on a loaded machine).

- ``publish_command``: the RESP of one publish (budgeted and plain policies, 256-byte message);
- ``policy``: ``HistoryPolicy.budgeted`` and ``unbudgeted()``, read per publish;
- ``send``: ``RespConnection.send`` of a 420-byte command into a Unix socket pair drained every 100 sends;
- ``route``: 50,000 subscriptions added to one channel's route, then 1,000 of them removed.

    python -m bench.engine_micro                 # all four, best of 7 (the route: once)
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable

from gevent import socket

from app.engine.history import HistoryPolicy, publish_command
from app.engine.routes import Route
from app.resp import RedisAddress, RespConnection


def best_ns(step: Callable[[], object], number: int, per_call: int = 1) -> float:
    seconds = min(timeit.repeat(step, number=number, repeat=7, timer=time.process_time))
    return 1e9 * seconds / (number * per_call)


def main() -> None:
    sha, key, message = b"a" * 40, b"bench::channel-1", b"x" * 256
    budgeted = HistoryPolicy(1000, 3600, 4 << 20, 256 << 20, "bench")
    plain = HistoryPolicy(1000, 3600)
    for name, policy in (("budgeted", budgeted), ("plain", plain)):
        publish_command(sha, key, message, policy, True)
        ns = best_ns(lambda p=policy: publish_command(sha, key, message, p, True), 200_000)
        print(f"publish_command, {name} policy: {ns:,.0f} ns")
    budgeted.unbudgeted()
    print(f"HistoryPolicy.budgeted: {best_ns(lambda: budgeted.budgeted, 500_000):,.0f} ns")
    print(f"HistoryPolicy.unbudgeted(): {best_ns(lambda: budgeted.unbudgeted(), 500_000):,.0f} ns")

    writer, reader = socket.socketpair()
    conn = RespConnection(RedisAddress("redis://127.0.0.1:1"))
    conn.sock = writer
    if hasattr(conn, "_raw"):
        conn._raw = writer._sock  # what connect() sets for a plain gevent socket
    command = b"*3\r\n$7\r\nEVALSHA\r\n" + b"x" * 400

    def hundred_sends() -> None:
        for _ in range(100):
            conn.send(command)
        try:
            while reader._sock.recv(1 << 20):
                pass
        except BlockingIOError:
            pass

    print(f"RespConnection.send: {best_ns(hundred_sends, 500, 100):,.0f} ns (the reader's drain included)")
    writer.close()
    reader.close()
    route_churn()


class _Subscriber:  # what a route reads of a subscription
    __slots__ = ("filter", "shared_window")

    def __init__(self) -> None:
        self.filter = None
        self.shared_window = None


def route_churn(count: int = 50_000, removed: int = 1_000) -> None:
    route = Route(b"bench::fanout", None)  # type: ignore[arg-type]  # no shard link needed to add
    subscribers = [_Subscriber() for _ in range(count)]
    started = time.process_time()
    for sub in subscribers:
        route.add(sub)  # type: ignore[arg-type]
    added = time.process_time()
    for sub in subscribers[:removed]:
        route.remove(sub)  # type: ignore[arg-type]
    done = time.process_time()
    print(
        f"Route.add x {count:,}: {added - started:.3f} s; Route.remove among them: "
        f"{1e6 * (done - added) / removed:,.1f} us each"
    )


if __name__ == "__main__":
    main()
