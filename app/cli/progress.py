"""Progress of long commands (a bulk publish, the import of a big apps.yaml): what step runs, for how long."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


@contextmanager
def progress(label: str, stream: TextIO | None = None) -> Iterator[None]:
    """Say what a long step is doing; on a terminal, tick the elapsed seconds while it runs."""
    stream = stream or sys.stderr
    started = time.monotonic()
    done = threading.Event()
    ticker = None
    if stream.isatty():

        def tick() -> None:
            while not done.wait(1.0):
                print(f"\r{label}… {time.monotonic() - started:.0f} s", end="", file=stream, flush=True)

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
    else:
        print(f"{label}…", file=stream, flush=True)
    try:
        yield
    finally:
        done.set()
        if ticker is not None:
            ticker.join()
            print("\r", end="", file=stream)
        print(f"{label}: done in {time.monotonic() - started:.1f} s", file=stream, flush=True)
