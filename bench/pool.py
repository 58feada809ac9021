"""Connections of a load process: the non-blocking Cobra set-up (upgrade, handshake, authenticate,
subscribe) and buffered writes over one epoll, shared by every connection of the process."""

from __future__ import annotations

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

    # ------------------------------------------------------------------ set-up
    def open(self, kind: str, spec: PublisherSpec | SubscriberSpec | None) -> Conn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
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
                if events & select.EPOLLOUT and conn.state == "connecting":
                    self.start_upgrade(conn)
                if events & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP) and self.setup_read(conn):
                    pending -= 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"{pending} connection(s) not ready after {plan.setup_timeout}s")

    def start_upgrade(self, conn: Conn) -> None:
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"connect to {self.host}:{self.port}: {os.strerror(err)}")
        request, conn.accept = wsclient.json_upgrade(self.host, self.port, self.path, self.plan.appkey)
        conn.sock.sendall(request)
        conn.state = "upgrade"
        self.epoll.modify(conn.fd, select.EPOLLIN)
        conn.want_write = False

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
