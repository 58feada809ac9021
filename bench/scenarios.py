"""The benchmark scenarios of issue #7 and how their connections are spread over load processes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from .plan import FILTER_TEMPLATE, PublisherSpec, SubscriberSpec, WorkerPlan

CONNECTIONS_PER_WORKER = 2500  # well under the 20,000 file descriptors a process may hold here


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    kind: str  # "throughput" | "latency" | "memory": which numbers the summary puts first
    publishers: int = 1
    channels: int = 1
    subscribers: int = 1
    window: int = 1  # unacknowledged publishes per publisher (closed loop)
    lag: int = 0  # messages a publisher may run ahead of its slowest subscriber (0 = not gated)
    rate: float = 0.0  # total messages/s over all publishers, open loop (0 = closed loop)
    filtered: bool = False
    idle: int = 0
    message_size: int = 256
    source_addresses: int = 0  # >0: load sockets bound across 127.0.0.2.. (see pool.source_address)

    def describe(self) -> dict[str, object]:
        return asdict(self)


# Closed-loop throughput scenarios gate publishers on the slowest subscriber too (``lag``): what is measured
# is the rate the server *delivers* without unbounded queues, so a server that acknowledges fast but delivers
# late (or disconnects slow consumers) cannot look better than it is. ``lag`` bounds each subscriber's
# backlog to a few hundred KB, far below our 8 MiB slow-consumer limit.
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("ack", "(a) 1 publisher -> 1 subscriber, ack-gated", "latency", window=1),
        Scenario(
            "throughput",
            "(b) 4 publishers x 100 in flight -> 1 channel -> 1 subscriber",
            "throughput",
            publishers=4,
            window=100,
            lag=2000,
        ),
        Scenario(
            "fanout100",
            "(c) 1 publisher -> 1 channel -> 100 subscribers",
            "throughput",
            subscribers=100,
            window=50,
            lag=500,
        ),
        Scenario(
            "fanout1000",
            "(c) 1 publisher -> 1 channel -> 1,000 subscribers",
            "throughput",
            subscribers=1000,
            window=50,
            lag=200,
        ),
        Scenario(
            "many",
            "(d) 50 publishers -> 5 channels -> 5 subscribers",
            "throughput",
            publishers=50,
            channels=5,
            subscribers=5,
            window=20,
            lag=2000,
        ),
        Scenario(
            "filtered",
            "(e) 1 publisher -> 100 subscribers with a StreamSQL filter matching half",
            "throughput",
            subscribers=100,
            window=50,
            lag=500,
            filtered=True,
        ),
        Scenario("rate", "(f) open loop at a fixed rate, 1 publisher -> 1 subscriber", "latency", rate=1000),
        Scenario(
            "idle",
            "(g) 10,000 idle authenticated connections: broker RSS per connection",
            "memory",
            publishers=0,
            subscribers=0,
            idle=10_000,
        ),
        # Issue 18: one broker process holding 100,000 authenticated connections, half of them subscribed to
        # one channel; one publish a second is fanned out to all of them (p99 of those deliveries), the
        # connect storm is timed, and RSS per connection is measured. --connections scales it down.
        Scenario(
            "c100k",
            "(h) 100,000 authenticated connections, half subscribed: RSS each, fan-out p99, connect rate",
            "memory",
            subscribers=50_000,
            idle=50_000 - 1,
            rate=1.0,
            source_addresses=64,
        ),
    )
}

RACE_SCENARIOS = ("throughput", "fanout100", "fanout1000", "many", "ack", "rate")


def customise(
    scenario: Scenario,
    *,
    subscribers: int | None = None,
    rate: float | None = None,
    connections: int | None = None,
    message_size: int | None = None,
) -> Scenario:
    """Command-line overrides, applied only where they mean something for the scenario."""
    changes: dict[str, object] = {}
    if subscribers is not None and scenario.subscribers > 1:
        changes["subscribers"] = subscribers
    if rate is not None and scenario.rate:
        changes["rate"] = rate
    if connections is not None and scenario.idle and scenario.subscribers > 1:
        # Half subscribed, the other half idle, one of them the publisher (c100k).
        changes["subscribers"] = connections // 2
        changes["idle"] = max(0, connections - connections // 2 - scenario.publishers)
    elif connections is not None and scenario.idle:
        changes["idle"] = connections
    if message_size is not None:
        changes["message_size"] = message_size
    return replace(scenario, **changes) if changes else scenario


def build_plans(
    scenario: Scenario,
    *,
    target: str,
    appkey: str,
    role: str,
    secret: str,
    workers: int | None,
    cpus: list[int] | None,
    run_tag: str,
    setup_concurrency: int = 64,
    protocol: str = "cobra",
) -> list[WorkerPlan]:
    """Spread the scenario's connections over load processes.

    Publishers and subscribers live in different processes when there are at least two, so that the
    latency of a delivery never includes the time the same process spent sending publishes.
    ``setup_concurrency`` bounds the connections being opened at once over all processes: our broker at
    1dadd9a fails subscribes with ``shard_unavailable`` when more than ~100 arrive at once (redis-py 8's
    pool of 100 connections, see BENCHMARKS.md), and a benchmark measures the steady state, not that storm.
    """
    channels = [f"bench-{run_tag}-{scenario.name}-{i}" for i in range(scenario.channels)]
    per_publisher_rate = scenario.rate / scenario.publishers if scenario.rate and scenario.publishers else 0.0
    publishers = [
        PublisherSpec(
            pub_id=i,
            channel=channels[i % scenario.channels],
            window=scenario.window,
            lag=scenario.lag,
            rate=per_publisher_rate,
            message_size=scenario.message_size,
        )
        for i in range(scenario.publishers)
    ]
    subscribers = [
        SubscriberSpec(
            sub_id=j,
            channel=channels[j % scenario.channels],
            stream_sql=FILTER_TEMPLATE.format(channel=channels[j % scenario.channels])
            if scenario.filtered
            else None,
        )
        for j in range(scenario.subscribers)
    ]
    total = len(publishers) + len(subscribers) + scenario.idle
    if workers is None:
        workers = max(2 if publishers and subscribers else 1, math.ceil(total / CONNECTIONS_PER_WORKER))
        if len(subscribers) >= 100:
            workers = max(workers, 4)  # spread big fan-outs so no single process must read every socket
    workers = max(1, min(workers, total))
    if publishers and subscribers and workers >= 2:
        share = round(workers * len(publishers) / (len(publishers) + len(subscribers)))
        pub_workers = max(1, min(workers - 1, share))
    else:
        pub_workers = workers
    plans = [
        WorkerPlan(
            worker_id=w,
            n_workers=workers,
            n_publishers=len(publishers),
            target=target,
            appkey=appkey,
            role=role,
            secret=secret,
            pub_channels=[p.channel for p in publishers],
            cpus=cpus,
            setup_concurrency=max(4, setup_concurrency // workers),
            protocol=protocol,
            source_addresses=scenario.source_addresses,
            setup_timeout=max(120.0, total / 100),  # a 100,000-connection storm at >= 100/s
        )
        for w in range(workers)
    ]
    for i, spec in enumerate(publishers):
        plans[i % pub_workers].publishers.append(spec)
    sub_pool = plans[pub_workers:] if publishers and workers > pub_workers else plans
    for j, spec in enumerate(subscribers):
        sub_pool[j % len(sub_pool)].subscribers.append(spec)
    for k in range(scenario.idle):
        plans[k % workers].idle += 1
    return plans


def at_half_load(scenario: Scenario, max_publishes_per_s: float) -> Scenario | None:
    """The same publishers, channels and subscribers open loop at half of ``max_publishes_per_s`` (what the
    closed-loop run of ``scenario`` achieved): latency under load, p99 and p99.9, not at saturation."""
    if scenario.kind != "throughput" or scenario.rate or max_publishes_per_s <= 0:
        return None
    return replace(
        scenario,
        name=f"{scenario.name}-at50",  # in channel names: no "%" (a format character)
        title=f"{scenario.title}, open loop at 50 % of its max ({max_publishes_per_s / 2:,.0f} publishes/s)",
        kind="latency",
        rate=round(max_publishes_per_s / 2, 1),
    )
