"""What one push costs to encode, JSON (orjson) next to CBOR (cbor2's C extension), per PROTOCOL §10.

A push is assembled from a shared tail (position and messages: encoded once per message and encoding) and a
per-subscriber head (push counter and subscription id). This times each piece for a telemetry-sized
message, and the request parse of a publish, for both encodings, in one process without sockets.

    python -m bench.codec_bench [--repeat 200000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import timeit

import orjson

from app import codec, protocol

MESSAGE = {"device": {"model": "pixel", "os": "android"}, "data": {"fps": 59.9, "frame": 1234, "mem": 812}}
POSITION = "1800000000000-0"


def _time(statement, repeat: int) -> float:
    """Best of 5 runs, in microseconds per call."""
    return min(timeit.repeat(statement, number=repeat, repeat=5)) / repeat * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=200_000, help="calls per timing run")
    args = parser.parse_args()
    message_json = orjson.dumps(MESSAGE)
    publish = {"action": "rtm/publish", "id": 7, "body": {"channel": "engine_fps_id", "message": MESSAGE}}
    json_request, cbor_request = orjson.dumps(publish), codec.cbor2.dumps(publish)
    n = args.repeat
    # Two equal messages that are different objects, taken in turn: push_tail's one-entry cache misses
    # each time, as for the first CBOR subscriber of every new message.
    fresh = itertools.cycle([bytes(bytearray(message_json)), bytes(bytearray(message_json))])

    rows = {
        "message encode (bytes of one message)": (
            _time(lambda: orjson.dumps(MESSAGE), n),
            _time(lambda: codec.cbor2.dumps(MESSAGE), n),
        ),
        "push tail, first subscriber of a message": (
            _time(lambda: protocol.push_tail(POSITION, message_json), n),
            _time(lambda: codec.push_tail(POSITION, next(fresh)), n),
        ),
        "push tail, each further subscriber (shared)": (
            0.0,
            _time(lambda: codec.push_tail(POSITION, message_json), n),
        ),
        "push head (counter) per subscriber": (
            _time(lambda: b"%d" % 12345, n),
            _time(lambda: codec.push_counter(12345), n),
        ),
        "request parse (rtm/publish)": (
            _time(lambda: protocol.parse_request(json_request), n // 4),
            _time(lambda: codec.parse_request(cbor_request), n // 4),
        ),
    }
    print(f"{'per call, µs':48} {'JSON (orjson)':>14} {'CBOR (cbor2)':>14}")
    for name, (json_us, cbor_us) in rows.items():
        print(f"{name:48} {json_us:14.3f} {cbor_us:14.3f}")
    print(
        json.dumps({name: {"json_us": round(j, 3), "cbor_us": round(c, 3)} for name, (j, c) in rows.items()})
    )


if __name__ == "__main__":
    main()
