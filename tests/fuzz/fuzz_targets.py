"""Coverage-guided fuzz targets (atheris/libFuzzer) for the three parsers that face the internet.

    python tests/fuzz/fuzz_targets.py stream_sql -dict=tests/fuzz/stream_sql.dict -atheris_runs=1000000
    python tests/fuzz/fuzz_targets.py pdu -max_total_time=600
    python tests/fuzz/fuzz_targets.py frames corpus_dir/

Each target accepts arbitrary bytes and must end in a value or the documented exception; anything else
is a crash that libFuzzer reports with the input that caused it. The test suite runs each target briefly
(tests/fuzz/test_fuzz_targets.py); long runs are for humans.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    from app import protocol
    from app.stream_sql import FilterError, compile_filter
    from app.websocket.frames import MessageReader, ProtocolError
    from app.websocket.handshake import DeflateParams


def stream_sql(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(4096)
    try:
        stream_filter = compile_filter(text, max_length=4096)
    except FilterError:
        return
    for message in ({}, {"data": {"fps": 1, "url": "u"}}, "text", [1], {"messages": [{"a": 1}, 2]}):
        stream_filter.apply(message)


def pdu(data: bytes) -> None:
    result = protocol.parse_request(data)
    assert isinstance(result, (protocol.Request, protocol.FatalError))


def frames(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    reader = MessageReader(4096, DeflateParams() if provider.ConsumeBool() else None)
    chunk = provider.ConsumeIntInRange(1, 64)
    stream = provider.ConsumeBytes(len(data))
    try:
        for i in range(0, len(stream), chunk):
            reader.feed(stream[i : i + chunk])
    except ProtocolError:
        pass


TARGETS = {"stream_sql": stream_sql, "pdu": pdu, "frames": frames}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
