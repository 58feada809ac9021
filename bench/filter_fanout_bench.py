"""Fan-out cost of StreamSQL filters inside the engine, without sockets (issue #3's second number).

    python -m bench.filter_fanout_bench [--subscribers 1000] [--messages 2000]

Routes messages through ``Router.route_message`` to N subscriptions whose sink only keeps the finished push
bytes, so what is measured is the broker's CPU per delivery up to the send queue: filter evaluation,
projection, serialisation and push assembly. Three cases: N subscribers sharing one filter (one evaluation
per message), N subscribers with N distinct filters (N evaluations per message), and no filter.
End-to-end numbers over real sockets come from ``python -m bench`` (scenario "filtered fan-out").
"""

from __future__ import annotations

import argparse
import platform
import time

import orjson

from app.engine.router import Router
from app.engine.routes import Route
from app.stream_sql import compile_filter
from app.subscription import Subscription

MESSAGE = {
    "device": {"app_version": "4.3.2", "model": "pixel 7", "os": "android 14"},
    "data": {"fps": 24.5, "frame_ms": 40.8, "status": 404, "url": "https://why_are_we_still_making/this"},
    "id": "engine_fps_id",
    "ts": 1764158400123,
}


class DiscardingSink:
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def send_payload(self, payload: bytes) -> None:
        self.count += 1

    def send_push(self, counter: int, subscription_part: bytes, tail: bytes) -> None:
        self.count += 1


def run(filters: list, messages: int) -> tuple[float, int]:
    engine = Router()
    key = b"app::engine_fps_id"
    route = engine.routes[key] = Route(key, link=None)  # type: ignore[arg-type]
    sinks = []
    for i, stream_filter in enumerate(filters):
        sink = DiscardingSink()
        route.add(Subscription(sink, f"sub-{i}", "engine_fps_id", key.decode(), stream_filter))
        sinks.append(sink)
    payloads = [b"%d-0 " % (i + 1) + orjson.dumps({**MESSAGE, "seq": i}) for i in range(messages)]
    started = time.perf_counter()
    for payload in payloads:
        engine.route_message(None, key, payload)
    elapsed = time.perf_counter() - started
    return elapsed, sum(s.count for s in sinks)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    n = args.subscribers
    where = "data.fps < 30 AND data.status != 200 AND device.model LIKE 'pixel'"
    shared = compile_filter(f"select data.fps, device.model from `engine_fps_id` where {where}")
    distinct = [
        compile_filter(f"select data.fps, device.model from `engine_fps_id` where {where} AND ts > {i}")
        for i in range(n)
    ]
    machine = f"python {platform.python_version()} on {platform.machine()}"
    print(f"{machine}; {n} subscribers, {args.messages} messages")
    for label, filters in (
        ("one shared filter", [shared] * n),
        (f"{n} distinct filters", distinct),
        ("no filter", [None] * n),
    ):
        elapsed, delivered = run(filters, args.messages)
        rate = delivered / elapsed
        print(f"{label:<22} {rate:>12,.0f} deliveries/s   ({elapsed:.2f} s, {delivered:,} pushes)")


if __name__ == "__main__":
    main()
