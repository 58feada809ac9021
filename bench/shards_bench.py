"""Acknowledged publish throughput with 1 vs 3 Redis shards.

For each shard count: fresh redis-servers (a config Redis plus the shards), one or more broker processes
(``python -m app run --log-level WARNING``), then several publisher *processes*, each with a few raw-socket
WebSocket connections keeping many publishes in flight over many channels. A publish counts once its
``rtm/publish/ok`` came back (the broker acknowledges only what Redis holds). Loopback only; every loop is
bounded by ``--duration``.

Besides publishes per second it reports CPU seconds per 1000 publishes of the broker processes and of each
Redis shard, which shows what the shard count changes: the work of one Redis node is split over several.

    python -m bench.shards_bench                          # 1 vs 3 shards, defaults below
    python -m bench.shards_bench --shards 1 3 --brokers 2 --publishers 4 --duration 20 --json out.json
    python -m bench.shards_bench --shards 1 --cluster 3     # and one Redis Cluster shard of 3 masters
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import redis

from app.config_store import ConfigStore
from app.embedded_redis import RedisProcess, free_port
from app.models import PERMISSIONS, App, AppSettings, Role, Shard

from . import wsclient

ROOT = Path(__file__).resolve().parents[1]
APP, ROLE, SECRET = "bench", "publisher", "bench-secret-0123456789abcdef0123"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- a raw WebSocket publisher
def masked_text_frame(payload: bytes) -> bytes:
    """Clients must mask (RFC 6455 §5.3); a fresh key per frame costs nothing next to the publish itself."""
    return wsclient.encode_frame(payload, os.urandom(4))


def split_frames(buffer: bytearray) -> list[bytes]:
    """Complete server frames taken off the front of ``buffer``; their payloads."""
    frames, end = wsclient.parse_frames(buffer)
    payloads = [bytes(buffer[begin:stop]) for _, begin, stop in frames]
    del buffer[:end]
    return payloads


class Publisher:
    """One authenticated connection, blocking during set-up, non-blocking while publishing."""

    def __init__(self, port: int, app: str = APP) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        request, accept = wsclient.json_upgrade("127.0.0.1", port, "/v2", app)
        self.sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the upgrade")
            head += chunk
        status, _, rest = head.partition(b"\r\n\r\n")
        try:
            wsclient.check_upgrade_response(status, accept)
        except wsclient.HandshakeError as exc:
            raise ConnectionError(str(exc)) from exc
        self.buffer += rest
        nonce = self.request(wsclient.handshake_pdu(ROLE))["body"]["data"]["nonce"]
        reply = self.request(wsclient.authenticate_pdu(SECRET, nonce))
        if not reply["action"].endswith("/ok"):
            raise ConnectionError(f"authentication failed: {reply}")

    def request(self, pdu: bytes) -> dict[str, Any]:
        self.sock.sendall(masked_text_frame(pdu))
        while True:
            payloads = split_frames(self.buffer)
            if payloads:
                return orjson.loads(payloads[0])
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk


def publisher_process(
    port: int,
    index: int,
    connections: int,
    window: int,
    channels: int,
    size: int,
    warmup: float,
    duration: float,
    results: Any,
    app: str = APP,
) -> None:
    """Keep ``window`` publishes in flight on each connection; count acknowledgements in the window."""
    frames = [
        masked_text_frame(
            orjson.dumps(
                {
                    "action": "rtm/publish",
                    "id": i,
                    "body": {
                        "channel": f"bench-{index}-{i % channels}",
                        "message": {"n": i, "pad": "x" * size},
                    },
                }
            )
        )
        for i in range(max(channels, 1000))
    ]
    conns = [Publisher(port, app) for _ in range(connections)]
    selector = selectors.DefaultSelector()
    cursor = [0]

    def next_frames(count: int) -> bytes:
        out = []
        for _ in range(count):
            out.append(frames[cursor[0] % len(frames)])
            cursor[0] += 1
        return b"".join(out)

    for conn in conns:
        conn.sock.setblocking(True)
        conn.sock.sendall(next_frames(window))
        conn.sock.setblocking(False)
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    started = time.monotonic()
    measure_from, stop_at = started + warmup, started + warmup + duration
    acked = errors = 0
    while True:
        now = time.monotonic()
        if now >= stop_at:
            break
        for key, _ in selector.select(timeout=min(0.1, stop_at - now)):
            conn = key.data
            try:
                chunk = conn.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                raise ConnectionError("the broker closed a publisher connection")
            conn.buffer += chunk
            done = 0
            for payload in split_frames(conn.buffer):
                if b"rtm/publish/ok" in payload:
                    done += 1
                elif b"rtm/publish/error" in payload:
                    done += 1
                    errors += 1
            if done:
                if time.monotonic() >= measure_from:
                    acked += done
                conn.sock.setblocking(True)
                conn.sock.sendall(next_frames(done))
                conn.sock.setblocking(False)
    results.put({"acked": acked, "errors": errors, "seconds": duration})
    for conn in conns:
        conn.sock.close()


# --------------------------------------------------------------------------- processes and measurement
def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def redis_cpu(url: str) -> float:
    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def start_broker(
    config_url: str, state: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, int]:
    """``python -m app run`` on a free port against the config store at ``config_url`` (``extra_env``: COBRA_*
    settings); returns once it authenticates a client and acknowledges a publish."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_")}
    env.update({"REDIS_URL": config_url, "COBRA_STATE_DIR": str(state / f"broker-{port}")})
    env.update(extra_env or {})
    log = open(state / f"broker-{port}.log", "wb")  # noqa: SIM115 - lives as long as the broker
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "run", "--port", str(port), "--log-level", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:  # ready = it authenticates us and acknowledges a publish
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=1).read()
            probe = Publisher(port)
            reply = probe.request(wsclient.pdu("rtm/publish", 1, {"channel": "probe", "message": 1}))
            probe.sock.close()
            if reply["action"] == "rtm/publish/ok":
                return process, port
        except (OSError, ConnectionError, KeyError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"broker did not start; see {log.name}")
        time.sleep(0.2)


class _ClusterNodes:
    """A Redis Cluster of ``masters`` masters (no replicas) as one shard; its nodes stand where the plain
    shards do in the CPU and key counts. Needs a Redis >= 7 (the test suite's cluster fixture finds one)."""

    def __init__(self, state: Path, masters: int) -> None:
        from tests.support.redis_cluster import RedisCluster

        self.cluster = RedisCluster(state / "cluster", masters=masters, replicas=0)

    def start(self) -> list[Shard]:
        self.cluster.start()
        return [Shard("cluster", self.cluster.url)]

    @property
    def nodes(self) -> list[Any]:
        return [_NodeURL(f"redis://{node.address}/0") for node in self.cluster.nodes]

    def stop(self) -> None:
        self.cluster.stop()


class _NodeURL:
    def __init__(self, url: str) -> None:
        self.url = url

    def stop(self) -> None:
        pass


def measure_publishes(
    ports: list[int], broker_pids: list[int], redis_urls: list[str], args: argparse.Namespace, app: str = APP
) -> dict[str, Any]:
    """Acked publishes/s of ``args.publishers`` publisher processes spread over the brokers on ``ports``,
    and the CPU each broker process and each Redis node at ``redis_urls`` spent per 1000 of them."""
    results: Any = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(
            target=publisher_process,
            args=(
                ports[i % len(ports)],
                i,
                args.connections,
                args.window,
                args.channels,
                args.size,
                args.warmup,
                args.duration,
                results,
                app,
            ),
        )
        for i in range(args.publishers)
    ]
    for worker in workers:
        worker.start()
    time.sleep(args.warmup)
    cpu_before = [process_cpu(pid) for pid in broker_pids], [redis_cpu(url) for url in redis_urls]
    time.sleep(args.duration)
    cpu_after = [process_cpu(pid) for pid in broker_pids], [redis_cpu(url) for url in redis_urls]
    totals = [results.get(timeout=args.duration + 60) for _ in workers]
    for worker in workers:
        worker.join(30)
    acked = sum(t["acked"] for t in totals)
    per_k = 1000 / acked if acked else 0.0
    return {
        "publishes_per_second": acked / args.duration,
        "errors": sum(t["errors"] for t in totals),
        "broker_cpu_ms_per_1000": [
            round((after - before) * per_k * 1000, 1)
            for before, after in zip(cpu_before[0], cpu_after[0], strict=True)
        ],
        "redis_cpu_ms_per_1000": [
            round((after - before) * per_k * 1000, 1)
            for before, after in zip(cpu_before[1], cpu_after[1], strict=True)
        ],
    }


def stop_brokers(brokers: list[subprocess.Popen]) -> None:
    for process in brokers:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def run_once(
    shard_count: int, args: argparse.Namespace, workdir: Path, cluster_masters: int = 0
) -> dict[str, Any]:
    state = workdir / (f"cluster-{cluster_masters}" if cluster_masters else f"shards-{shard_count}")
    config = RedisProcess(state / "config")
    cluster = _ClusterNodes(state, cluster_masters) if cluster_masters else None
    shards: list[Any] = [RedisProcess(state / f"shard{i}") for i in range(0 if cluster else shard_count)]
    brokers: list[subprocess.Popen] = []
    try:
        config.start()
        for shard in shards:
            shard.start()
        listed = [Shard(f"s{i}", shard.url) for i, shard in enumerate(shards)]
        if cluster is not None:
            listed = cluster.start()
            shards = cluster.nodes
        store = ConfigStore.from_url(config.url)
        store.put_app(
            App(APP, {ROLE: Role(ROLE, SECRET, PERMISSIONS)}, AppSettings(history_max_length=args.history))
        )
        store.set_shards(listed)
        ports = []
        for _ in range(args.brokers):
            process, port = start_broker(config.url, state)
            brokers.append(process)
            ports.append(port)
        row = measure_publishes(ports, [b.pid for b in brokers], [s.url for s in shards], args)
        return {
            "shards": shard_count,
            "brokers": args.brokers,
            **row,
            "keys_per_shard": [redis.Redis.from_url(s.url).dbsize() for s in shards],
        }
    finally:
        stop_brokers(brokers)
        for server in [*shards, config]:
            server.stop()
        if cluster is not None:
            cluster.stop()


def add_publisher_arguments(
    parser: argparse.ArgumentParser, publishers: int = 3, duration: float = 10.0
) -> None:
    """The load options of :func:`measure_publishes` (shared with bench.ha_bench)."""
    parser.add_argument("--publishers", type=int, default=publishers, help="publisher processes")
    parser.add_argument("--connections", type=int, default=4, help="connections per publisher process")
    parser.add_argument("--window", type=int, default=100, help="publishes in flight per connection")
    parser.add_argument("--channels", type=int, default=1000, help="channels per publisher process")
    parser.add_argument("--size", type=int, default=64, help="padding bytes in each message")
    parser.add_argument("--history", type=int, default=1000, help="history_max_length of the app (0 = off)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--duration", type=float, default=duration, help="seconds measured")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 3], help="shard counts to compare")
    parser.add_argument(
        "--brokers", type=int, default=1, help="broker processes (publishers spread over them)"
    )
    add_publisher_arguments(parser)
    parser.add_argument(
        "--cluster", type=int, default=0, metavar="MASTERS", help="also run on one Redis Cluster shard"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="shards-bench-") as tmp:
        for count in args.shards:
            row = run_once(count, args, Path(tmp))
            rows.append(row)
            print(
                f"{count} shard(s), {args.brokers} broker(s): "
                f"{row['publishes_per_second']:,.0f} acked publishes/s"
                f"  (errors {row['errors']}; broker CPU ms/1000 {row['broker_cpu_ms_per_1000']};"
                f" redis CPU ms/1000 per shard {row['redis_cpu_ms_per_1000']}; keys per shard"
                f" {row['keys_per_shard']})",
                flush=True,
            )
        if args.cluster:
            row = run_once(0, args, Path(tmp), cluster_masters=args.cluster)
            rows.append(row | {"cluster_masters": args.cluster})
            print(
                f"Redis Cluster of {args.cluster} masters, {args.brokers} broker(s): "
                f"{row['publishes_per_second']:,.0f} acked publishes/s  (errors {row['errors']};"
                f" broker CPU ms/1000 {row['broker_cpu_ms_per_1000']};"
                f" redis CPU ms/1000 per master {row['redis_cpu_ms_per_1000']}; keys per master"
                f" {row['keys_per_shard']})",
                flush=True,
            )
    if args.json:
        args.json.write_text(
            json.dumps({"settings": vars(args) | {"json": str(args.json)}, "results": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
