"""Broker CPU per publish with many subscriptions on one channel, with permessage-deflate and without.

One broker (``python -m app run``, its own Redis), ``--connections`` subscriber connections holding
``--subscriptions`` subscriptions on one channel between them (deflate offered or not), one publisher
sending ``--publishes`` messages of ``--size`` bytes. The subscribers' sockets are drained (bytes read and
dropped) by one thread; the broker's CPU time (user + system, from /proc) over the publishes, less its idle
rate, divided by the publishes, is the figure. SECURITY.md and BENCHMARKS.md quote it.

    python -m bench.deflate_fanout_bench [--subscriptions 1000] [--publishes 200] [--size 1024]
"""

from __future__ import annotations

import argparse
import selectors
import tempfile
import threading
import time
from pathlib import Path

import psutil

from app.client import CobraClient

from .servers import BENCH_APP, BENCH_ROLE, LocalServer
from .wsclient import OP_TEXT, RawWebSocket, authenticate, pdu

DEFLATE = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _drain(sockets: list, stop: threading.Event, counter: list[int]) -> None:
    selector = selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    while not stop.is_set():
        for key, _ in selector.select(0.1):
            try:
                counter[0] += len(key.fileobj.recv(1 << 20))
            except BlockingIOError:
                pass


def measure(deflate: bool, connections: int, subscriptions: int, publishes: int, size: int) -> float:
    """Broker CPU milliseconds per publish."""
    with tempfile.TemporaryDirectory() as workdir, LocalServer("ours", Path(workdir)) as server:
        process = psutil.Process(server.process.pid)
        subscribers = []
        for c in range(connections):
            ws = RawWebSocket(server.port, BENCH_APP, DEFLATE if deflate else None, timeout=30)
            authenticate(ws, BENCH_ROLE, server.secret)
            for s in range(c, subscriptions, connections):
                ws.send_frame(
                    OP_TEXT, pdu("rtm/subscribe", s, {"channel": "fan", "subscription_id": f"s{s}"})
                )
                ws.recv_json(timeout=30)
            subscribers.append(ws)
        stop, received = threading.Event(), [0]
        drainer = threading.Thread(target=_drain, args=([ws.sock for ws in subscribers], stop, received))
        drainer.start()
        message = "x" * size
        try:
            with CobraClient(server.endpoint, BENCH_APP, BENCH_ROLE, server.secret) as publisher:
                idle_start, idle_cpu = time.monotonic(), _cpu(process)
                time.sleep(2.0)
                idle_rate = (_cpu(process) - idle_cpu) / (time.monotonic() - idle_start)
                start, cpu = time.monotonic(), _cpu(process)
                for n in range(publishes):
                    publisher.publish("fan", {"n": n, "text": message})
                last = -1
                while received[0] != last:  # until the subscribers have everything
                    last = received[0]
                    time.sleep(0.5)
                used = _cpu(process) - cpu - idle_rate * (time.monotonic() - start)
        finally:
            stop.set()
            drainer.join()
            for ws in subscribers:
                ws.close()
        return used / publishes * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--publishes", type=int, default=200)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    results = {}
    for deflate in (False, True):
        results[deflate] = measure(deflate, args.connections, args.subscriptions, args.publishes, args.size)
        label = "deflate" if deflate else "no deflate"
        print(
            f"{label:>10}: {results[deflate]:.2f} ms of broker CPU per publish "
            f"({args.subscriptions} subscriptions, {args.size}-byte messages)"
        )
    print(f"ratio deflate / no deflate: {results[True] / results[False]:.2f}")


if __name__ == "__main__":
    main()
