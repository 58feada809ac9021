"""Acknowledged HTTP publishes per second (PROTOCOL §13), one message per request and 100 per request.

One broker process (``python -m app run`` from the working tree, pinned like the race: the broker on the first
core, Redis and the load on the others), and ``--clients`` load processes, each an :class:`HttpPublisher`
on one keep-alive connection sending requests back to back for ``--duration`` seconds. A publish counts once
its request was answered 200 (the broker answers only once Redis holds the messages). Loopback only.

    python -m bench.http_publish_bench                     # both modes, defaults below
    python -m bench.http_publish_bench --clients 8 --duration 10 --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from app.client import HttpPublisher

from .servers import BENCH_APP, BENCH_ROLE, LocalServer, default_cpu_layout

MESSAGE = {"device": {"model": "pixel"}, "data": {"fps": 59.9, "frame": 0, "pad": "x" * 180}}


def _load(base: str, secret: str, batch: int, duration: float, results: Any) -> None:
    publisher = HttpPublisher(base, BENCH_APP, BENCH_ROLE, secret, pool_size=1, retries=0)
    published = 0
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if batch == 1:
            publisher.publish("bench-http", MESSAGE)
        else:
            publisher.publish_many([("bench-http", MESSAGE)] * batch)
        published += batch
    publisher.close()
    results.put(published)


def measure(server: LocalServer, batch: int, clients: int, duration: float) -> dict[str, Any]:
    base = f"http://127.0.0.1:{server.port}"
    _load(base, server.secret, batch, 1.0, multiprocessing.Queue())  # warm-up: connections, scripts, caches
    broker = psutil.Process(server.process.pid)
    cpu_before = sum(broker.cpu_times()[:2])
    results: Any = multiprocessing.Queue()
    started = time.monotonic()
    workers = [
        multiprocessing.Process(target=_load, args=(base, server.secret, batch, duration, results))
        for _ in range(clients)
    ]
    for worker in workers:
        worker.start()
    total = sum(results.get(timeout=duration + 60) for _ in workers)
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    cpu = sum(broker.cpu_times()[:2]) - cpu_before
    return {
        "messages_per_request": batch,
        "clients": clients,
        "acked_publishes_per_second": round(total / elapsed),
        "broker_cpu_us_per_publish": round(cpu / total * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--clients", type=int, default=4, help="load processes, one keep-alive connection each"
    )
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per mode")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    broker_cpus, load_cpus = default_cpu_layout()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        server = LocalServer("ours", Path(workdir), broker_cpus=broker_cpus, load_cpus=load_cpus).start()
        try:
            if load_cpus:
                psutil.Process().cpu_affinity(load_cpus)
            for batch in (1, 100):
                rows.append(measure(server, batch, args.clients, args.duration))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            server.stop()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
