"""Micro-benchmark of StreamSQL (PROTOCOL §6): the per-message cost every subscription on a channel pays.

Run: ``python -m bench.stream_sql_bench``. Prints ns per ``matches()`` of a 3-comparison WHERE on a ~200-byte
message (the issue's target is under 1 µs), ns per ``apply()`` with a projection, and parse+compile time.
Timings are the best of several repeats, which is the least noisy estimate of the cost itself.
"""

from __future__ import annotations

import platform
import timeit

import orjson

from app.stream_sql import CACHE, compile_filter

WHERE = "data.status != 200 AND data.url LIKE 'why' AND device.fps > 10"
FILTER = f"SELECT * FROM `engine_net_request_id` WHERE {WHERE}"
PROJECTING = (
    f"SELECT data.url, data.status AS status, device.app_version FROM `engine_net_request_id` WHERE {WHERE}"
)
MESSAGE = orjson.loads(
    orjson.dumps(
        {
            "device": {"app_version": "4.3.2", "os_name": "Android", "fps": 30, "game": "miso"},
            "data": {
                "url": "https://cdn.example.com/why_are_we_still_making/this_request",
                "status": 404,
                "duration_ms": 118.5,
            },
            "id": "engine_net_request_id",
            "ts": 1700000000123,
        }
    )
)
REPEAT = 7


def best_ns(statement: str, number: int, **names: object) -> float:
    """Best-of-REPEAT time of one ``statement`` in ns (a string statement, so no lambda call is counted)."""
    return min(timeit.repeat(statement, number=number, repeat=REPEAT, globals=names)) / number * 1e9


def report(label: str, ns: float) -> None:
    print(f"{label:<52} {ns:9.0f} ns" if ns < 100_000 else f"{label:<52} {ns / 1000:9.1f} µs")


def main() -> None:
    size = len(orjson.dumps(MESSAGE))
    print(
        f"python {platform.python_version()} on {platform.machine()}; {size}-byte message; best of {REPEAT}"
    )

    matching = compile_filter(FILTER)
    rejecting = {**MESSAGE, "data": {**MESSAGE["data"], "status": 200}}
    for label, message in (("all 3 true", MESSAGE), ("first false", rejecting)):
        ns = best_ns("f.matches(m)", 500_000, f=matching, m=message)
        report(f"matches(), 3-comparison WHERE, {label} -> {matching.matches(message)}", ns)

    projecting = compile_filter(PROJECTING)
    report(
        "apply(), same WHERE + 3-column projection", best_ns("f.apply(m)", 200_000, f=projecting, m=MESSAGE)
    )
    batch = {"messages": [MESSAGE] * 10}
    report(
        "apply(), same, on a 10-element `messages` batch",
        best_ns("f.apply(m)", 20_000, f=projecting, m=batch),
    )

    hit = best_ns("compile_filter(t)", 200_000, compile_filter=compile_filter, t=PROJECTING)
    report("compile_filter(), cache hit", hit)
    miss = best_ns("clear(); compile(t)", 2_000, clear=CACHE.clear, compile=compile_filter, t=PROJECTING)
    report("compile_filter(), parse + compile (cache miss)", miss)

    # SECURITY.md's LIKE promise: time linear in the subject, whatever the pattern (issue 14's attack).
    attack = compile_filter("SELECT * FROM c WHERE s LIKE '%" + "a_" * 965 + "b%'")
    subject = {"s": "a" * 1_000_000}
    report(
        "LIKE attack: 1,930-char '_' pattern vs a 1 MB string",
        best_ns("f.matches(m)", 3, f=attack, m=subject),
    )


if __name__ == "__main__":
    main()
