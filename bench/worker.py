"""One load process: many Cobra connections driven by a single-threaded epoll loop.

A worker opens its connections (upgrade → handshake → authenticate → subscribe), says it is ready, and on the
orchestrator's "go" runs publishers and subscribers until the measurement window closes; then it stops
publishing, drains outstanding acks and deliveries, reports, and keeps its sockets open (answering pings)
until told to close, so the orchestrator can measure the broker with the connections still up.

Cost per delivered message is the point of the design: frames are split by walking headers only, and the
benchmark fields are pulled from all complete frames of a ``recv`` with one regex scan, one clock read per
``recv``. There is no JSON parsing on the hot path.
"""

from __future__ import annotations

import os
import re
import resource
import select
import time
from array import array
from multiprocessing.connection import Connection as Pipe
from typing import Any

from . import wsclient
from .limits import raise_nofile
from .plan import SubscriberSpec, WorkerPlan, message_template, nchan_body
from .pool import RECV_SIZE, Conn, ConnectionPool

BENCH_RE = re.compile(rb'"_b":\s*\[(\d+),\s*(\d+),\s*(\d+)\]')
ID_RE = re.compile(rb'"id":\s*(\d+)')
LENGTH_RE = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
FIRST_ID = 10  # publish ids start here (0 and 1 are the auth PDUs)
MAX_SAMPLES = 4_000_000  # latency samples kept per worker (8 bytes each); beyond it every other one is kept


class Worker(ConnectionPool):
    def __init__(self, plan: WorkerPlan, control: Pipe, progress: Any) -> None:
        super().__init__(plan)
        self.control = control
        self.progress = progress  # RawArray('q', n_workers * n_publishers), see plan.PublisherSpec.lag
        # Publisher state, by pub_id.
        self.pubs = {p.pub_id: p for p in plan.publishers}
        self.seq = dict.fromkeys(self.pubs, 0)
        self.inflight = dict.fromkeys(self.pubs, 0)
        self.acked = dict.fromkeys(self.pubs, 0)
        self.acked_window = dict.fromkeys(self.pubs, 0)
        self.sent_window = dict.fromkeys(self.pubs, 0)
        self.pub_errors = dict.fromkeys(self.pubs, 0)
        self.next_due = dict.fromkeys(self.pubs, 0)
        self.nchan = plan.protocol == "nchan"
        if self.nchan:  # a whole pipelined POST per message; the body is our publishers' message object
            self.templates = {p.pub_id: nchan_post(p.channel, p.message_size) for p in plan.publishers}
        else:
            self.templates = {p.pub_id: message_template(p.channel, p.message_size) for p in plan.publishers}
        self.next_ack = dict.fromkeys(self.pubs, FIRST_ID)  # nchan answers in order: the oldest is acked
        self.sent_at: dict[int, dict[int, int]] = {p: {} for p in self.pubs}
        # Subscriber state, by sub_id: last sequence and count received from each publisher.
        self.subs = {s.sub_id: s for s in plan.subscribers}
        self.last = {s: [-1] * plan.n_publishers for s in self.subs}
        self.received = {s: [0] * plan.n_publishers for s in self.subs}
        self.out_of_order = 0
        self.deliveries_window = 0
        self.deliveries_total = 0
        self.last_delivery_ns = 0
        self.latency = array("q")
        self.ack_latency = array("q")
        self.sample_step = 1
        self.window = (0, 0)
        self.publishing = False
        self.followers: dict[int, list[int]] = {}
        self.cpu = 0.0

    def on_readable(self, conn: Conn, now: int) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.lost(conn, f"recv: {exc}")
            return
        if not data:
            self.lost(conn, "EOF")
            return
        buf = conn.inbuf
        buf += data
        if self.nchan and conn.kind == "pub":
            self.on_http_acks(conn, buf, now)
            return
        frames, end = wsclient.parse_frames(buf)
        if not frames:
            return
        if any(op > 2 or op == 0 for op, _, _ in frames):
            self.control_frames(conn, frames)
        if conn.kind == "sub":
            self.on_pushes(conn, buf, end, now)
        elif conn.kind == "pub":
            self.on_acks(conn, buf, end, now)
        del buf[:end]

    def on_pushes(self, conn: Conn, buf: bytearray, end: int, now: int) -> None:
        spec: SubscriberSpec = conn.spec
        last = self.last[spec.sub_id]
        received = self.received[spec.sub_id]
        in_window = self.window[0] <= now < self.window[1]
        latency = self.latency
        count = 0
        for match in BENCH_RE.finditer(buf, 0, end):
            pub = int(match[1])
            seq = int(match[2])
            if seq <= last[pub]:
                self.out_of_order += 1
            else:
                last[pub] = seq
            received[pub] += 1
            count += 1
            if in_window and count % self.sample_step == 0:
                latency.append((now - int(match[3])) // 1000)
        self.deliveries_total += count
        if count:
            self.last_delivery_ns = now
        if in_window:
            self.deliveries_window += count
            if len(latency) > MAX_SAMPLES:
                del latency[::2]
                self.sample_step *= 2
        if buf.find(b"/error", 0, end) >= 0:
            self.note_error(buf, end)

    def on_acks(self, conn: Conn, buf: bytearray, end: int, now: int) -> None:
        pub = conn.spec.pub_id
        acks = buf.count(b"publish/ok", 0, end)
        errors = buf.count(b"/error", 0, end)
        if errors:
            self.pub_errors[pub] += errors
            self.note_error(buf, end)
        self.inflight[pub] -= acks + errors
        self.acked[pub] += acks
        in_window = self.window[0] <= now < self.window[1]
        if in_window:
            self.acked_window[pub] += acks
        sent_at = self.sent_at[pub]
        for match in ID_RE.finditer(buf, 0, end):
            started = sent_at.pop(int(match[1]), None)
            if started is not None and in_window:
                self.ack_latency.append((now - started) // 1000)

    def on_http_acks(self, conn: Conn, buf: bytearray, now: int) -> None:
        """Complete HTTP responses to pipelined POSTs (nchan): 2xx is an ack, anything else an error."""
        pub = conn.spec.pub_id
        pos = acks = errors = 0
        while (head_end := buf.find(b"\r\n\r\n", pos)) >= 0:
            length = LENGTH_RE.search(buf, pos, head_end + 2)
            end = head_end + 4 + (int(length[1]) if length else 0)
            if end > len(buf):
                break
            if buf[pos + 9 : pos + 10] == b"2":
                acks += 1
            else:
                errors += 1
                if len(self.errors) < 5:
                    self.errors.append(bytes(buf[pos:end][:300]).decode(errors="replace"))
            pos = end
        if not pos:
            return
        del buf[:pos]
        self.inflight[pub] -= acks + errors
        self.pub_errors[pub] += errors
        self.acked[pub] += acks
        in_window = self.window[0] <= now < self.window[1]
        if in_window:
            self.acked_window[pub] += acks
        sent_at, first = self.sent_at[pub], self.next_ack[pub]
        for pdu_id in range(first, first + acks + errors):
            started = sent_at.pop(pdu_id, None)
            if started is not None and in_window:
                self.ack_latency.append((now - started) // 1000)
        self.next_ack[pub] = first + acks + errors

    def note_error(self, buf: bytearray, end: int) -> None:
        if len(self.errors) < 5:
            start = max(0, buf.find(b"/error", 0, end) - 40)
            self.errors.append(bytes(buf[start : start + 300]).decode(errors="replace"))

    # ------------------------------------------------------------------ publishing
    def publish_batch(self, pub: int, count: int, stamp: int, step: int = 0) -> None:
        """Send ``count`` publishes stamped ``stamp``, ``stamp + step``... in one write."""
        conn = self.pub_conn[pub]
        template = self.templates[pub]
        seq = self.seq[pub]
        sent_at = self.sent_at[pub]
        chunks = []
        for i in range(count):
            stamp_i = stamp + i * step
            if self.nchan:
                body = template[1] % (pub, seq, stamp_i, seq % 60)
                chunks.append(template[0] % len(body) + body)
            else:
                chunks.append(
                    wsclient.encode_frame(template % (seq + FIRST_ID, pub, seq, stamp_i, seq % 60), conn.mask)
                )
            sent_at[seq + FIRST_ID] = stamp_i
            seq += 1
        self.seq[pub] = seq
        self.inflight[pub] += count
        if self.window[0] <= stamp < self.window[1]:
            self.sent_window[pub] += count
        self.write(conn, b"".join(chunks))

    def slowest_delivered(self, pub: int) -> int:
        n = self.plan.n_publishers
        return min(self.progress[w * n + pub] for w in range(self.plan.n_workers))

    def drive_publishers(self, now: int) -> float:
        """Send what each publisher may send now; return the poll timeout in seconds."""
        timeout = 0.05
        for pub, spec in self.pubs.items():
            if self.pub_conn[pub].closed:
                continue
            if spec.rate:
                interval = int(1e9 / spec.rate)
                due = self.next_due[pub]
                if now >= due:
                    count = min((now - due) // interval + 1, 10_000)
                    self.publish_batch(pub, count, due, interval)
                    self.next_due[pub] = due = due + count * interval
                timeout = min(timeout, max(0.0, (due - now) / 1e9))
                continue
            room = spec.window - self.inflight[pub]
            if spec.lag and room > 0:
                room = min(room, self.slowest_delivered(pub) + spec.lag - self.seq[pub] + 1)
                if room <= 0:
                    timeout = 0.001  # waiting on subscribers in other processes: poll the shared table
            if room > 0:
                self.publish_batch(pub, room, now)
        return timeout

    def publish_progress(self) -> None:
        """Write, for each publisher, the last sequence every subscriber of this worker has seen."""
        n = self.plan.n_publishers
        base = self.plan.worker_id * n
        for pub, subs in self.followers.items():
            self.progress[base + pub] = min(self.last[s][pub] for s in subs)

    # ------------------------------------------------------------------ the run
    def run(self, start_ns: int, warmup_ns: int, duration_ns: int) -> None:
        plan = self.plan
        self.window = (start_ns + warmup_ns, start_ns + warmup_ns + duration_ns)
        followers = {
            p: [s.sub_id for s in plan.subscribers if s.channel == channel]
            for p, channel in enumerate(plan.pub_channels)
        }
        self.followers = {p: subs for p, subs in followers.items() if subs}
        by_fd = self.conns
        epoll_fd = self.epoll.fileno()
        while time.monotonic_ns() < start_ns:
            time.sleep(min(0.01, (start_ns - time.monotonic_ns()) / 1e9))
        for pub in self.pubs:
            self.next_due[pub] = start_ns
        cpu_start = cpu_end = None
        self.publishing = True
        end = self.window[1]
        drain_deadline = None
        next_progress = 0
        while True:
            now = time.monotonic_ns()
            if cpu_start is None and now >= self.window[0]:
                cpu_start = cpu_seconds()
            if self.publishing and now >= end:
                self.publishing = False
                cpu_end = cpu_seconds()
                drain_deadline = now + int(plan.drain_timeout * 1e9)
            timeout = self.drive_publishers(now) if self.publishing else 0.05
            if now >= next_progress and self.followers:
                self.publish_progress()
                next_progress = now + 1_000_000
            if 0 < timeout < 0.005:
                # epoll_wait sleeps in whole milliseconds, which would add up to 1 ms of client lag to the
                # open-loop schedule; select() on the epoll fd itself sleeps to the microsecond.
                select.select([epoll_fd], [], [], timeout)
                timeout = 0
            for fd, events in self.epoll.poll(timeout):
                conn = by_fd[fd]
                if events & select.EPOLLOUT:
                    self.flush(conn)
                if events & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                    self.on_readable(conn, time.monotonic_ns())
            if drain_deadline is not None and self.drained(time.monotonic_ns(), drain_deadline):
                break
        self.cpu = (cpu_end or cpu_seconds()) - (cpu_start or cpu_seconds())

    def drained(self, now: int, deadline: int) -> bool:
        if now > deadline:
            return True
        acks_done = all(self.inflight[p] <= 0 or self.pub_conn[p].closed for p in self.pubs)
        quiet = now - max(self.last_delivery_ns, self.window[1]) > 1_000_000_000
        return acks_done and (quiet or not self.subs)

    def report(self) -> dict[str, Any]:
        return {
            "worker": self.plan.worker_id,
            "cpu_seconds": self.cpu,
            "publishers": {
                p: {
                    "sent": self.seq[p],
                    "acked": self.acked[p],
                    "sent_window": self.sent_window[p],
                    "acked_window": self.acked_window[p],
                    "errors": self.pub_errors[p],
                }
                for p in self.pubs
            },
            "subscribers": {
                s: {"channel": spec.channel, "filtered": bool(spec.stream_sql), "received": self.received[s]}
                for s, spec in self.subs.items()
            },
            "deliveries_window": self.deliveries_window,
            "deliveries_total": self.deliveries_total,
            "out_of_order": self.out_of_order,
            "sample_step": self.sample_step,
            "latency_us": self.latency.tobytes(),
            "ack_latency_us": self.ack_latency.tobytes(),
            "disconnects": self.disconnects,
            "errors": self.errors,
            "connections": sum(1 for c in self.conns.values() if not c.closed),
        }

    def hold(self) -> None:
        """Keep the connections open (answering pings) until the orchestrator says "close"."""
        self.epoll.register(self.control.fileno(), select.EPOLLIN)
        control_fd = self.control.fileno()
        while True:
            for fd, _ in self.epoll.poll(1.0):
                if fd == control_fd:
                    self.control.recv()
                    return
                self.on_readable(self.conns[fd], time.monotonic_ns())


def nchan_post(channel: str, message_size: int) -> tuple[bytes, bytes]:
    """(request head with a ``%d`` for Content-Length, body template) of a POST to nchan's publisher."""
    head = (
        b"POST /pub/" + channel.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    )
    return head, nchan_body(channel, message_size)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker_main(plan: WorkerPlan, control: Pipe, progress: Any) -> None:
    """Entry point of a load process (multiprocessing target)."""
    if plan.cpus:
        os.sched_setaffinity(0, plan.cpus)
    raise_nofile()
    worker = Worker(plan, control, progress)
    try:
        worker.setup()
    except Exception as exc:
        control.send(("failed", f"worker {plan.worker_id}: {type(exc).__name__}: {exc}"))
        return
    control.send(("ready", {"connections": len(worker.conns), "setup_ns": worker.setup_ns}))
    message = control.recv()
    if message[0] != "go":
        return
    _, start_ns, warmup_ns, duration_ns = message
    worker.run(start_ns, warmup_ns, duration_ns)
    control.send(("report", worker.report()))
    worker.hold()
    for conn in worker.conns.values():
        conn.sock.close()
