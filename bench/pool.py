"""Connections of a load process: the non-blocking Cobra set-up (upgrade, handshake, authenticate,
subscribe) and buffered writes over one epoll, shared by every connection of the process."""

from __future__ import annotations

import base64
import errno
import os
import select
import socket
import time
from typing import Any

import orjson

from . import wsclient
from .plan import PublisherSpec, SubscriberSpec, WorkerPlan

RECV_SIZE = 1 << 18
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux >= 4.2


def source_address(index: int, count: int) -> str:
    """The ``index``-th of ``count`` loopback source addresses 127.0.0.2, 127.0.0.3, ... (wrapping)."""
    n = 2 + index % count  # 127.0.0.1 is the server's; the whole of 127.0.0.0/8 is loopback on Linux
    return f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


class Conn:
    """One socket and its setup state machine; the run-phase logic lives in the worker loop."""

    __slots__ = (
        "accept",
        "closed",
        "fd",
        "inbuf",
        "kind",
        "mask",
        "outbuf",
        "sock",
        "spec",
        "state",
        "want_write",
    )

    def __init__(self, sock: socket.socket, kind: str, spec: PublisherSpec | SubscriberSpec | None) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.kind = kind  # "pub" | "sub" | "idle"
        self.spec = spec
        self.state = "connecting"
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.mask = os.urandom(4)
        self.accept = b""
        self.closed = False
        self.want_write = True


class ConnectionPool:
    """Opens connections through the Cobra set-up and does their non-blocking writes; no benchmark logic."""

    def __init__(self, plan: WorkerPlan) -> None:
        self.plan = plan
        self.epoll = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.host, self.port, self.path = wsclient.split_target(plan.target)
        self.errors: list[str] = []
        self.disconnects = 0
        self.pub_conn: dict[int, Conn] = {}
        self.opened = 0
        self.setup_ns = (0, 0)  # monotonic ns when set-up began and when the last connection was ready

    # ------------------------------------------------------------------ set-up
    def open(self, kind: str, spec: PublisherSpec | SubscriberSpec | None) -> Conn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        if self.plan.source_addresses:
            # Many source addresses across 127.0.0.0/8: a (source address, port) pair per connection, so
            # 100,000 connections to one port do not run out of the ~28,000 ephemeral ports of one address.
            # IP_BIND_ADDRESS_NO_PORT lets the kernel pick the port at connect() by the whole 4-tuple.
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind(
                (
                    source_address(
                        self.plan.worker_id + self.opened * self.plan.n_workers, self.plan.source_addresses
                    ),
                    0,
                )
            )
        self.opened += 1
        err = sock.connect_ex((self.host, self.port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, os.strerror(err))
        conn = Conn(sock, kind, spec)
        self.conns[conn.fd] = conn
        self.epoll.register(conn.fd, select.EPOLLIN | select.EPOLLOUT)
        return conn

    def setup(self) -> None:
        plan = self.plan
        todo: list[tuple[str, Any]] = [("pub", p) for p in plan.publishers]
        todo += [("sub", s) for s in plan.subscribers]
        todo += [("idle", None)] * plan.idle
        todo.reverse()
        deadline = time.monotonic() + plan.setup_timeout
        began = time.monotonic_ns()
        pending = 0
        while todo or pending:
            while todo and pending < plan.setup_concurrency:
                kind, spec = todo.pop()
                conn = self.open(kind, spec)
                pending += 1
                if kind == "pub":
                    self.pub_conn[spec.pub_id] = conn
            for fd, events in self.epoll.poll(0.5):
                conn = self.conns[fd]
                if events & select.EPOLLOUT and conn.state == "connecting" and self.start_upgrade(conn):
                    pending -= 1
                    continue
                if events & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP) and self.setup_read(conn):
                    pending -= 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"{pending} connection(s) not ready after {plan.setup_timeout}s")
        self.setup_ns = (began, time.monotonic_ns())

    def start_upgrade(self, conn: Conn) -> bool:
        """Send the upgrade once connected; True if the connection needs nothing more (an nchan publisher)."""
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"connect to {self.host}:{self.port}: {os.strerror(err)}")
        self.epoll.modify(conn.fd, select.EPOLLIN)
        conn.want_write = False
        if self.plan.protocol == "nchan":
            if conn.kind == "pub":  # plain HTTP/1.1 keep-alive: POSTs are sent during the run
                conn.state = "ready"
                return True
            channel = conn.spec.channel if conn.kind == "sub" else f"idle-{self.plan.worker_id}"
            key = base64.b64encode(os.urandom(16)).decode()
            headers = {"Host": f"{self.host}:{self.port}", "Sec-WebSocket-Key": key}
            request = wsclient.upgrade_request(f"/sub/{channel}", headers)
            conn.accept = wsclient.accept_key(key)
        else:
            request, conn.accept = wsclient.json_upgrade(self.host, self.port, self.path, self.plan.appkey)
        conn.sock.sendall(request)
        conn.state = "upgrade"
        return False

    def setup_read(self, conn: Conn) -> bool:
        """Advance the set-up of ``conn`` with what arrived; True once it is ready."""
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        if not data:
            raise ConnectionError(f"server closed a connection during set-up (state {conn.state})")
        conn.inbuf += data
        if conn.state == "upgrade":
            head_end = conn.inbuf.find(b"\r\n\r\n")
            if head_end < 0:
                return False
            wsclient.check_upgrade_response(bytes(conn.inbuf[:head_end]), conn.accept)
            del conn.inbuf[: head_end + 4]
            if self.plan.protocol == "nchan":  # subscribed by the upgrade itself
                conn.state = "ready"
                return True
            conn.state = "handshake"
            self.send(conn, wsclient.handshake_pdu(self.plan.role))
        frames, end = wsclient.parse_frames(conn.inbuf)
        data_ops = (wsclient.OP_TEXT, wsclient.OP_BINARY)
        replies = [orjson.loads(conn.inbuf[b:e]) for op, b, e in frames if op in data_ops]
        del conn.inbuf[:end]
        for reply in replies:
            action = reply.get("action", "")
            if not action.endswith("/ok"):
                raise RuntimeError(f"set-up failed in state {conn.state}: {reply}")
            if conn.state == "handshake":
                nonce = reply["body"]["data"]["nonce"]
                self.send(conn, wsclient.authenticate_pdu(self.plan.secret, nonce))
                conn.state = "auth"
            elif conn.state == "auth" and conn.kind == "sub":
                spec = conn.spec
                self.send(conn, wsclient.subscribe_pdu(2, spec.channel, f"s{spec.sub_id}", spec.stream_sql))
                conn.state = "subscribe"
            else:
                conn.state = "ready"
                return True
        return False

    # ------------------------------------------------------------------ I/O
    def send(self, conn: Conn, payload: bytes) -> None:
        self.write(conn, wsclient.encode_frame(payload, conn.mask))

    def write(self, conn: Conn, data: bytes) -> None:
        if conn.closed:
            return
        if conn.outbuf:
            conn.outbuf += data
            return
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.lost(conn, f"send: {exc}")
            return
        if sent < len(data):
            conn.outbuf += data[sent:]
            if not conn.want_write:
                self.epoll.modify(conn.fd, select.EPOLLIN | select.EPOLLOUT)
                conn.want_write = True

    def flush(self, conn: Conn) -> None:
        try:
            sent = conn.sock.send(conn.outbuf)
        except BlockingIOError:
            return
        except OSError as exc:
            self.lost(conn, f"send: {exc}")
            return
        del conn.outbuf[:sent]
        if not conn.outbuf and conn.want_write:
            self.epoll.modify(conn.fd, select.EPOLLIN)
            conn.want_write = False

    def lost(self, conn: Conn, why: str) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.disconnects += 1
        if len(self.errors) < 5:
            self.errors.append(f"{conn.kind} connection lost: {why}")
        try:
            self.epoll.unregister(conn.fd)
        except OSError:
            pass

    def control_frames(self, conn: Conn, frames: list[tuple[int, int, int]]) -> None:
        for op, begin, end in frames:
            if op == wsclient.OP_PING:
                pong = wsclient.encode_frame(bytes(conn.inbuf[begin:end]), conn.mask, wsclient.OP_PONG)
                self.write(conn, pong)
            elif op == wsclient.OP_CLOSE:
                code = wsclient.close_code(bytes(conn.inbuf[begin:end]))
                reason = bytes(conn.inbuf[begin + 2 : end]).decode(errors="replace")
                self.lost(conn, f"closed by the server: {code} {reason}")
