"""End to end: what 1,000 subscribers sharing one aggregated view cost the broker, versus one subscriber.

A real broker process (``python -m app run``, started by :class:`bench.servers.LocalServer` with its own
Redis), one publisher sending ``--rate`` telemetry messages per second to ``engine_fps_id`` over a raw
WebSocket (:mod:`bench.wsclient`), and K subscribers (``--subscribers``, 1 then 1,000 by default) of the
same view (3 aggregates, 100 groups, a WHERE). Measured: the broker process's CPU seconds per second of wall
time (user + system, from psutil) over ``--seconds`` of steady publishing, after a warm-up. Each case runs
``--repeat`` times, alternating, in one session (the machine may be shared: compare within a run).

One drain thread reads and discards every socket (pushes and publish acks), so no send queue backs up.

    python -m bench.view_share_bench [--rate 2000] [--seconds 10] [--repeat 3] [--subscribers 1,1000]
"""

from __future__ import annotations

import argparse
import os
import random
import selectors
import socket
import tempfile
import threading
import time
from pathlib import Path

import psutil

from .servers import BENCH_APP, BENCH_ROLE, LocalServer
from .view_bench import VIEW
from .wsclient import OP_TEXT, RawWebSocket, authenticate, encode_frame, pdu, subscribe_pdu

CHANNEL = "engine_fps_id"


def connect(port: int, secret: str) -> RawWebSocket:
    ws = RawWebSocket(port, BENCH_APP, timeout=30)
    authenticate(ws, BENCH_ROLE, secret)
    return ws


class Drain(threading.Thread):
    """Reads every socket and throws the bytes away; counts them."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        super().__init__(daemon=True)
        self.selector = selectors.DefaultSelector()
        for sock in sockets:
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ)
        self.received = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            for key, _ in self.selector.select(0.2):
                try:
                    data = key.fileobj.recv(1 << 16)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                self.received += len(data)


def subscribe_all(port: int, secret: str, count: int) -> list[RawWebSocket]:
    subscribers = []
    for n in range(count):
        ws = connect(port, secret)
        ws.send_frame(OP_TEXT, subscribe_pdu(2, CHANNEL, f"view-{n}", VIEW))
        reply = ws.recv_json(30)
        assert reply["action"] == "rtm/subscribe/ok", reply
        subscribers.append(ws)
    return subscribers


def publish_for(ws: RawWebSocket, rate: int, seconds: float, payloads: list[dict]) -> int:
    """Publish ``rate`` messages per second (in 10 ms ticks) for ``seconds``; returns how many."""
    sent, start = 0, time.perf_counter()
    tick = 0.01
    per_tick = max(1, round(rate * tick))
    while (elapsed := time.perf_counter() - start) < seconds:
        frames = b"".join(
            ws_frame(pdu("rtm/publish", n, {"channel": CHANNEL, "message": payloads[n % len(payloads)]}))
            for n in range(sent, sent + per_tick)
        )
        ws.sock.sendall(frames)
        sent += per_tick
        ahead = sent / rate - elapsed
        if ahead > 0:
            time.sleep(ahead)
    return sent


def ws_frame(payload: bytes) -> bytes:
    return encode_frame(payload, os.urandom(4), OP_TEXT)


def measure(server: LocalServer, subscribers: int, rate: int, seconds: float) -> tuple[float, int, int]:
    """(broker CPU s per s, messages published, bytes the subscribers received) for one case."""
    rng = random.Random(7)
    payloads = [
        {
            "device": {"model": f"model-{rng.randrange(100)}", "os": "android"},
            "data": {"fps": rng.choice([60, 30, 15, 59.9]), "frame": i, "mem": rng.randrange(500, 900)},
        }
        for i in range(1000)
    ]
    subs = subscribe_all(server.port, server.secret, subscribers)
    publisher = connect(server.port, server.secret)
    drain = Drain([ws.sock for ws in subs])
    drain.start()
    acks = Drain([publisher.sock])  # a second selector only for the publisher's acks
    acks.start()
    publisher.sock.setblocking(True)
    broker = psutil.Process(server.process.pid)  # type: ignore[union-attr]
    try:
        publish_for(publisher, rate, 2.0, payloads)  # warm-up: windows armed, caches filled
        before, wall = broker.cpu_times(), time.perf_counter()
        sent = publish_for(publisher, rate, seconds, payloads)
        after, wall = broker.cpu_times(), time.perf_counter() - wall
        time.sleep(1.5)  # the last window's push
        cpu = (after.user - before.user + after.system - before.system) / wall
        return cpu, sent, drain.received
    finally:
        drain.stopped.set()
        acks.stopped.set()
        drain.join(2)
        acks.join(2)
        for ws in [*subs, publisher]:
            ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=2000, help="messages per second published")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per case")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case, alternating")
    parser.add_argument("--subscribers", default="1,1000", help="comma-separated subscriber counts")
    args = parser.parse_args()
    cases = [int(n) for n in args.subscribers.split(",")]
    print(f"view: {VIEW}")
    print(f"{args.rate} msgs/s published for {args.seconds:g} s per run; broker CPU = user+system s per s")
    results: dict[int, list[float]] = {n: [] for n in cases}
    with tempfile.TemporaryDirectory() as workdir:
        for run in range(args.repeat):
            for count in cases:
                # A fresh broker per run: no connections left over from the other case.
                with LocalServer("ours", Path(workdir) / f"run{run}-{count}") as server:
                    cpu, sent, received = measure(server, count, args.rate, args.seconds)
                results[count].append(cpu)
                print(
                    f"  run {run + 1}: {count:>5} subscriber(s): broker CPU {cpu:.3f} s/s "
                    f"({sent / args.seconds:,.0f} msgs/s sent, {received / 1024:,.0f} KiB pushed)",
                    flush=True,
                )
    for count in cases:
        values = sorted(results[count])
        print(f"{count:>5} subscriber(s): median {values[len(values) // 2]:.3f} CPU s/s, runs {values}")


if __name__ == "__main__":
    main()
