"""Messages per second one process folds into an aggregated view (PROTOCOL §12), without sockets.

The view of the issue's target: 3 aggregates over 100 groups (``device.model`` takes 100 values), with a
WHERE, fed telemetry-sized messages. Timed three ways: the per-message step alone (``ViewWindow.add``), with
the view's WHERE (``StreamFilter.apply`` then ``add``: what the broker runs per published message, since it
decodes each message once for all its filters), and with the JSON decode included (the cost if the view were
the only filter on its channel). Also the end-of-window step (``rows()``, 100 sorted rows).

    python -m bench.view_bench [--messages 200000]
"""

from __future__ import annotations

import argparse
import random
import time

import orjson

from app.stream_sql import compile_filter

VIEW = (
    "SELECT device.model, AVG(data.fps) AS fps, COUNT(*) AS n, MAX(data.mem) AS mem FROM `engine_fps_id`"
    " WHERE data.fps > 0 GROUP BY device.model"
)


def _messages(count: int, groups: int) -> list[bytes]:
    rng = random.Random(7)
    return [
        orjson.dumps(
            {
                "device": {"model": f"model-{rng.randrange(groups)}", "os": "android"},
                "data": {"fps": rng.choice([60, 30, 15, 59.9]), "frame": i, "mem": rng.randrange(500, 900)},
            }
        )
        for i in range(count)
    ]


def _best(run, repeat: int = 5) -> float:
    """Best wall time of ``repeat`` runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=200_000, help="messages per timing run")
    parser.add_argument("--groups", type=int, default=100, help="distinct device.model values")
    args = parser.parse_args()
    view = compile_filter(VIEW)
    assert view.view is not None
    raw = _messages(args.messages, args.groups)
    decoded = [orjson.loads(m) for m in raw]
    apply, new_window = view.apply, view.view.new_window

    def add_only() -> None:
        add = new_window(1000).add
        for message in decoded:
            add(message)

    def with_where() -> None:
        add = new_window(1000).add
        for message in decoded:
            for item in apply(message):
                add(item)

    def with_decode() -> None:
        add, loads = new_window(1000).add, orjson.loads
        for message in raw:
            for item in apply(loads(message)):
                add(item)

    full = new_window(1000)
    for message in decoded:
        full.add(message)
    rows_time = _best(full.rows, repeat=50)
    n = args.messages
    print(f"view: {VIEW}")
    print(f"{n:,} messages, {args.groups} groups, best of 5")
    for name, run in (("add", add_only), ("WHERE + add", with_where), ("decode + WHERE + add", with_decode)):
        seconds = _best(run)
        print(f"  {name:<22} {n / seconds:>12,.0f} messages/s   {seconds / n * 1e9:>7.0f} ns/message")
    print(f"  rows() of a full window ({len(full.rows())} rows): {rows_time * 1e6:,.0f} µs")


if __name__ == "__main__":
    main()
