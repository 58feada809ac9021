"""The engine alone: broker CPU per acknowledged publish, and Redis CPU per publish, without WebSockets.

One process holds an :class:`app.engine.Engine` on one fresh redis-server and keeps ``--window`` publishes
in flight (a publish is re-issued from the callback of the one acknowledged, as many connections would),
into ``--channels`` channels, each followed by ``--subscribers`` local subscriptions whose sink only counts
pushes. What the engine costs per publish (the RESP command, the pipelined batch, the reply, the Pub/Sub
read, the routing and the push into each subscription) is this process's CPU time divided by the publishes
acknowledged; Redis's own CPU (INFO cpu) is reported next to it. The inbound WebSocket path and the client
sockets are left out on purpose: this is the engine's share, measured steadily on a busy machine.

    python -m bench.engine_bench                               # budgeted publishes (the default policy)
    python -m bench.engine_bench --no-budget                   # the plain publish script
    python -m bench.engine_bench --subscribers 100 --window 50 # fan-out into the subscriptions
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path

import gevent
import orjson
import redis

from app.embedded_redis import RedisProcess
from app.engine import Engine
from app.engine.history import HistoryPolicy
from app.subscription import Subscription


class CountingSink:
    """A subscription's sink that counts pushes and bytes (no socket)."""

    tracks_pushes = False

    def __init__(self) -> None:
        self.pushes = 0
        self.bytes = 0

    def send_payload(self, payload: bytes) -> None:
        self.pushes += 1

    def send_push(self, counter: int, subscription_part: bytes, tail: bytes) -> None:
        self.pushes += 1
        self.bytes += len(tail)


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisProcess(Path(tmp), extra_args=["--appendonly", "no"])
        server.start()
        assert server.process is not None
        if args.redis_cpus:
            os.sched_setaffinity(server.process.pid, {int(c) for c in args.redis_cpus.split(",")})
        try:
            return _measure(args, server.url)
        finally:
            server.process.terminate()
            server.process.wait(10)


def _measure(args: argparse.Namespace, url: str) -> dict[str, float]:
    gc.freeze()  # as the broker does after start-up (app.broker), with its default gc_threshold
    gc.set_threshold(50_000, 50, 100)
    engine = Engine()
    engine.configure([], url)
    if not engine.wait_ready(10):
        raise RuntimeError("the engine did not connect")
    keys = [f"bench::channel-{i}" for i in range(args.channels)]
    sinks = []
    for key in keys:
        for n in range(args.subscribers):
            sink = CountingSink()
            sinks.append(sink)
            engine.subscribe(Subscription(sink, f"s{n}", key.split("::")[1], key, None), replay=False)
    budget = 0 if args.no_budget else 4 << 20
    policy = HistoryPolicy(1000, 3600, budget, 0 if args.no_budget else 256 << 20, "bench")
    message = orjson.dumps({"device": {"game": "bench", "id": 1}, "data": {"fps": 30, "pad": "x" * 180}})
    state = {"acked": 0, "errors": 0, "next": 0, "stop": False}

    def issue() -> None:
        index = state["next"]
        state["next"] = index + 1
        engine.publish(keys[index % len(keys)], message, policy, on_ack)

    def on_ack(result: object) -> None:
        if isinstance(result, str):
            state["acked"] += 1
        else:
            state["errors"] += 1
        if not state["stop"]:
            issue()

    for _ in range(args.window):
        issue()
    client = redis.Redis.from_url(url)
    gevent.sleep(args.warmup)
    acked0, pushes0 = state["acked"], sum(s.pushes for s in sinks)
    cpu0, redis0, wall0 = time.process_time(), redis_cpu(client), time.monotonic()
    gevent.sleep(args.duration)
    cpu1, redis1, wall1 = time.process_time(), redis_cpu(client), time.monotonic()
    acked, pushes = state["acked"] - acked0, sum(s.pushes for s in sinks) - pushes0
    state["stop"] = True
    engine.drain(5)
    engine.stop()
    return {
        "acked/s": acked / (wall1 - wall0),
        "pushes/s": pushes / (wall1 - wall0),
        "engine us/publish": 1e6 * (cpu1 - cpu0) / max(acked, 1),
        "engine us/push": 1e6 * (cpu1 - cpu0) / max(pushes, 1),
        "redis us/publish": 1e6 * (redis1 - redis0) / max(acked, 1),
        "errors": state["errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--window", type=int, default=400, help="publishes in flight")
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--subscribers", type=int, default=1, help="per channel")
    parser.add_argument("--no-budget", action="store_true", help="the plain publish script")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--redis-cpus", default="", help="pin Redis to these cores, e.g. 1")
    args = parser.parse_args()
    for _ in range(args.rounds):
        result = run(args)
        print("  ".join(f"{k} {v:,.2f}" for k, v in result.items()), flush=True)


if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()
    main()
