"""What each load process does: the picklable plan the orchestrator hands to a worker, and the message format.

Every published message carries ``"_b": [publisher, sequence, send time in ns]``. The send time comes from
``time.monotonic_ns()``, which on Linux is one system-wide clock (CLOCK_MONOTONIC), so a subscriber in another
process on the same host can subtract it. Open-loop publishers stamp the *scheduled* send time, so a client
that falls behind shows up as latency instead of silently sending later (no coordinated omission).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The filtered scenario's StreamSQL: ``data.fps`` is ``sequence % 60``, so exactly half of the messages match.
# It is written in the subset the reference's parser handles (spaces around operators, one kind of AND/OR).
FILTER_TEMPLATE = "SELECT * FROM `{channel}` WHERE data.fps < 30 AND device.game = 'bench'"


def filter_matches(sequence: int) -> bool:
    """Whether message ``sequence`` passes ``FILTER_TEMPLATE`` (used to count the expected deliveries)."""
    return sequence % 60 < 30


def matching_count(sent: int) -> int:
    """How many of the sequences 0..sent-1 pass ``FILTER_TEMPLATE``."""
    full, rest = divmod(sent, 60)
    return full * 30 + min(rest, 30)


@dataclass
class PublisherSpec:
    pub_id: int  # global index: the slot in the shared progress table and the first field of "_b"
    channel: str
    window: int = 1  # publishes sent but not yet acknowledged; 1 = ack-gated
    lag: int = 0  # most messages ahead of the slowest subscriber of the channel (0 = no delivery gating)
    rate: float = 0.0  # messages/s, open loop (acks are counted but do not gate); 0 = closed loop
    message_size: int = 256  # approximate bytes of the message (padding added to reach it)


@dataclass
class SubscriberSpec:
    sub_id: int
    channel: str
    stream_sql: str | None = None


@dataclass
class WorkerPlan:
    worker_id: int
    n_workers: int
    n_publishers: int
    target: str
    appkey: str
    role: str
    secret: str
    publishers: list[PublisherSpec] = field(default_factory=list)
    subscribers: list[SubscriberSpec] = field(default_factory=list)
    pub_channels: list[str] = field(default_factory=list)  # channel of every publisher, by pub_id
    idle: int = 0
    cpus: list[int] | None = None  # sched_setaffinity of the worker; None = leave as is
    setup_concurrency: int = 100  # connections being opened at the same time, per worker
    setup_timeout: float = 120.0
    drain_timeout: float = 10.0  # after the window: how long to wait for outstanding acks and deliveries
    protocol: str = "cobra"  # "nchan": HTTP POST publishers + WebSocket subscribers of bench/nchan.py
    source_addresses: int = 0  # >0: bind each socket to one of 127.0.0.2.. (this many), see pool.py


def message_template(channel: str, message_size: int) -> bytes:
    """A publish PDU with ``%d`` slots for: id, publisher, sequence, send time, fps.

    The message looks like telemetry (a device block, a data block) and is padded to about
    ``message_size`` bytes, so JSON work on the server is representative.
    """
    head = (
        b'{"action":"rtm/publish","id":%d,"body":{"channel":"' + channel.encode() + b'","message":{'
        b'"_b":[%d,%d,%d],"device":{"game":"bench","os_name":"Android","app_version":"4.3.2",'
        b'"model":"601SO"},"data":{"fps":%d},"pad":"'
    )
    tail = b'"}}}'
    base = len(head) + len(tail) + 40  # the numbers filled in later take about 40 characters
    return head + b"x" * max(0, message_size - base) + tail


def nchan_body(channel: str, message_size: int) -> bytes:
    """What an nchan publisher POSTs: byte for byte the ``message`` object inside ``message_template``
    (same size, same JSON), with ``%d`` slots for publisher, sequence, send time, fps."""
    template = message_template(channel, message_size)
    return template[template.index(b'"message":') + len(b'"message":') : -2]
