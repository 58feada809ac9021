"""The benchmark harness's pure parts: scenario overrides, the half-load derivation, source addresses, the
nchan POST body and the parsing of pipelined HTTP acknowledgements."""

from __future__ import annotations

import ipaddress
import re

import orjson

from bench.limits import shortfalls
from bench.plan import WorkerPlan, message_template, nchan_body
from bench.pool import source_address
from bench.race import per_cpu_table
from bench.scenarios import SCENARIOS, at_half_load, build_plans, customise
from bench.worker import Worker, nchan_post


def test_c100k_connections_override_keeps_half_subscribed():
    scenario = customise(SCENARIOS["c100k"], connections=20_000)
    assert scenario.subscribers == 10_000
    assert scenario.subscribers + scenario.idle + scenario.publishers == 20_000
    idle = customise(SCENARIOS["idle"], connections=500)
    assert idle.idle == 500 and idle.subscribers == 0


def test_c100k_plans_bind_sources_and_scale_the_setup_timeout():
    plans = build_plans(
        SCENARIOS["c100k"], target="ws://127.0.0.1:1/v2", appkey="a", role="r", secret="s", workers=None,
        cpus=None, run_tag="t",
    )  # fmt: skip
    assert len(plans) == 40  # 2,500 connections per load process
    assert all(p.source_addresses == 64 and p.setup_timeout >= 1000 for p in plans)
    assert sum(len(p.subscribers) + p.idle + len(p.publishers) for p in plans) == 100_000


def test_source_addresses_are_loopback_and_never_the_servers():
    seen = {source_address(i, 300) for i in range(1000)}
    assert len(seen) == 300
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network("127.0.0.0/8") for a in seen)
    assert "127.0.0.1" not in seen and "127.0.1.45" in seen  # 2 + 299 = 301 = 1 * 256 + 45


def test_half_load_is_open_loop_at_half_the_rate_reached():
    half = at_half_load(SCENARIOS["fanout100"], 2_000.0)
    assert half is not None and half.rate == 1_000.0 and half.kind == "latency"
    assert half.subscribers == 100 and "%" not in half.name  # the name goes into channel names
    assert at_half_load(SCENARIOS["rate"], 2_000.0) is None  # already open loop
    assert at_half_load(SCENARIOS["ack"], 2_000.0) is None  # a latency scenario
    assert at_half_load(SCENARIOS["throughput"], 0.0) is None  # failed run: nothing to halve


def test_nchan_body_is_the_message_our_publishers_send():
    channel, size = "bench-x-throughput-0", 256
    ours = orjson.loads(message_template(channel, size) % (10, 1, 2, 3, 4))
    body = orjson.loads(nchan_body(channel, size) % (1, 2, 3, 4))
    assert ours["body"]["message"] == body
    head, template = nchan_post(channel, size)
    assert head.startswith(b"POST /pub/" + channel.encode() + b" HTTP/1.1\r\n") and template == nchan_body(
        channel, size
    )


class _Conn:
    def __init__(self) -> None:
        self.spec = type("Spec", (), {"pub_id": 0})()


def _response(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )


def test_pipelined_http_acks_are_counted_whole_and_in_order():
    from bench.plan import PublisherSpec

    plan = WorkerPlan(0, 1, 1, "ws://127.0.0.1:1/", "", "", "", protocol="nchan")
    plan.publishers.append(PublisherSpec(0, "c"))
    plan.pub_channels.append("c")
    worker = Worker(plan, control=None, progress=None)
    worker.window = (0, 10**18)
    worker.inflight[0] = 3
    worker.sent_at[0] = {10: 100_000, 11: 200_000, 12: 300_000}
    stream = _response(b"202 Accepted", b"queued messages: 1\r\n") + _response(b"201 Created", b"x" * 30)
    error = _response(b"500 Internal Server Error", b"oops")
    stream += error
    buf = bytearray(stream[:-3])  # the last response is not complete yet
    worker.on_http_acks(_Conn(), buf, 1_000_000)
    assert worker.acked[0] == 2 and worker.inflight[0] == 1 and worker.next_ack[0] == 12
    assert sorted(worker.ack_latency) == [800, 900] and buf == bytearray(error[:-3])
    buf += stream[-3:]
    worker.on_http_acks(_Conn(), buf, 1_000_000)
    assert worker.pub_errors[0] == 1 and worker.inflight[0] == 0 and not buf
    assert re.search("500", worker.errors[0])


def test_per_cpu_table_puts_every_server_against_the_first():
    def row(server: str, rate: float, per_cpu: float) -> dict:
        return {
            "server": server, "scenario": "ack", "deliveries_per_s": rate, "deliveries_per_cpu_s": per_cpu,
            "latency_ms": {"p99": 1.0}, "broker": {"cpu_percent": 50.0}, "redis": {}, "lost": 0,
        }  # fmt: skip

    table = per_cpu_table([row("ours", 1000, 4000), row("nchan-memory", 2000, 20000)])
    nchan_line = next(line for line in table.splitlines() if "nchan-memory" in line)
    assert "2.00x" in nchan_line and "5.00x" in nchan_line


def test_limit_shortfalls_name_each_limit_a_run_exceeds():
    here = {
        "fs.file-max": "2466116",
        "fs.nr_open": "1048576",
        "net.core.somaxconn": "4096",
        "net.ipv4.ip_local_port_range": "32768 60999",
        "RLIMIT_NOFILE": "20000 (hard 20000)",
    }
    fits = shortfalls(
        here, connections=18000, source_addresses=64, setup_concurrency=256, broker_nofile=20000
    )
    assert fits == []
    found = shortfalls(
        {**here, "net.core.somaxconn": "128"},
        connections=100_000, source_addresses=1, setup_concurrency=256, broker_nofile=20_000,
    )  # fmt: skip
    assert len(found) == 3
    assert "RLIMIT_NOFILE 20,000 < 100,100" in found[0]
    assert "100,000 connections per source address > 28,232 ephemeral ports" in found[1]
    assert "somaxconn 128" in found[2]
    unknown = shortfalls({}, connections=100_000, source_addresses=9, setup_concurrency=9, broker_nofile=None)
    assert unknown == []  # nothing read, nothing claimed
