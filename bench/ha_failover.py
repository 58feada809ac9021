"""Failover time and acknowledged-but-lost messages when a shard's master is SIGKILLed.

One acked publisher per app (a thread, one connection, ``window`` publishes in flight on one channel of the
killed master) keeps publishing while the master is killed. The failover time is the time from the SIGKILL
to the first acknowledgement of a publish *sent after* it (an answer to one sent before may be the old
master's, still on its way). Once every publisher has resumed and published a little longer, the publishers
stop and each acknowledged position is looked up in the channel's history on the new master: what is missing
was acknowledged and lost. The killed node is then restarted on its port as a replica (the topology is
reused: a fresh one per run would spend most of the run starting Redis), and the next run uses fresh
channels, so each failover's losses are counted apart.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import orjson

from app.channels import channel_key

from .ha_topologies import wait_for
from .shards_bench import Publisher, masked_text_frame, split_frames
from .wsclient import pdu

ERROR_BACKOFF = 0.005  # seconds before replacing a publish answered with an error: no busy loop while down


class AckedPublisher(threading.Thread):
    """Publishes ``{"n": i}`` to ``channel`` with ``window`` in flight, recording every answer with the
    monotonic times the publish was sent and answered; reconnects if the broker closes the connection."""

    def __init__(self, port: int, app: str, channel: str, window: int) -> None:
        super().__init__(daemon=True)
        self.port, self.app, self.channel, self.window = port, app, channel, window
        self.acked: list[tuple[int, str, float, float]] = []  # (n, position, sent at, acked at)
        self.errors: list[tuple[int, str, float]] = []  # (n, code, at)
        self.reconnects = 0
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.problem: BaseException | None = None
        self._sent: dict[int, float] = {}
        self._next = 1

    def run(self) -> None:
        try:
            self._publish_until_stopped()
        except BaseException as exc:  # reported by the orchestrator, which waits on this thread
            self.problem = exc
        finally:
            self.ready.set()

    def _connect(self) -> Publisher:
        publisher = Publisher(self.port, self.app)
        publisher.sock.settimeout(0.01)
        return publisher

    def _publish_until_stopped(self) -> None:
        conn = self._connect()
        self.ready.set()
        resume_at = 0.0
        drain_until = None
        while True:
            now = time.monotonic()
            if self.stopping.is_set():
                drain_until = drain_until or now + 5.0
                if not self._sent or now > drain_until:
                    break
            elif now >= resume_at and len(self._sent) < self.window:
                try:
                    conn.sock.sendall(self._frames(self.window - len(self._sent), now))
                except OSError:
                    conn = self._reconnect(conn)
                    continue
            try:
                chunk = conn.sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                conn = self._reconnect(conn)
                continue
            if not chunk:
                conn = self._reconnect(conn)
                continue
            conn.buffer += chunk
            at = time.monotonic()
            for payload in split_frames(conn.buffer):
                reply = orjson.loads(payload)
                sent = self._sent.pop(reply.get("id"), None)
                if sent is None:
                    continue
                if reply["action"] == "rtm/publish/ok":
                    self.acked.append((reply["id"], reply["body"]["position"], sent, at))
                else:
                    body = reply.get("body") or {}
                    self.errors.append((reply["id"], body.get("code") or body.get("error") or "?", at))
                    resume_at = at + ERROR_BACKOFF
        conn.sock.close()

    def _frames(self, count: int, now: float) -> bytes:
        out = []
        for _ in range(count):
            n, self._next = self._next, self._next + 1
            self._sent[n] = now
            body = {"channel": self.channel, "message": {"n": n}}
            out.append(masked_text_frame(orjson.dumps({"action": "rtm/publish", "id": n, "body": body})))
        return b"".join(out)

    def _reconnect(self, conn: Publisher) -> Publisher:
        """The publishes in flight have no answer and never will: they count neither as acked nor lost."""
        conn.sock.close()
        self._sent.clear()
        self.reconnects += 1
        while not self.stopping.is_set():
            try:
                return self._connect()
            except (OSError, ConnectionError, KeyError):
                time.sleep(0.2)
        raise ConnectionError("stopped while reconnecting")

    def first_ack_sent_after(self, moment: float) -> float | None:
        """When the first publish sent at or after ``moment`` was acknowledged (None: not yet)."""
        return next((acked for _n, _pos, sent, acked in list(self.acked) if sent >= moment), None)

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


def channel_on(topology: Any, app: str, prefix: str, master: int | None) -> str:
    """A channel name of ``app`` whose key lives on the node ``master`` (any node when None)."""
    for i in range(100_000):
        name = f"{prefix}-{i}"
        if master is None or topology.master_id(channel_key(app, name)) == master:
            return name
    raise LookupError(f"no channel of {app} on node {master}")


def one_failover(
    topology: Any, port: int, apps: list[str], run: int, window: int, before: float, after: float
) -> dict[str, dict[str, Any]]:
    """Kill the master of this run's channels under acked traffic; per app: failover seconds and losses."""
    first = channel_on(topology, apps[0], f"fo{run}", None)
    master = topology.master_id(channel_key(apps[0], first))
    channels = [first, *(channel_on(topology, app, f"fo{run}", master) for app in apps[1:])]
    publishers = [AckedPublisher(port, app, ch, window) for app, ch in zip(apps, channels, strict=True)]
    for publisher in publishers:
        publisher.start()
        publisher.ready.wait(30)
    try:
        try:
            wait_for(lambda: all(p.acked for p in publishers), 30, "acknowledged publishes before the kill")
        except RuntimeError as exc:
            errors = {p.app: sorted({code for _n, code, _at in p.errors}) for p in publishers}
            raise RuntimeError(f"{exc}; errors per app: {errors}") from None
        time.sleep(before)
        killed = topology.victim(channel_key(apps[0], first))
        killed_at = time.monotonic()
        topology.kill(killed)
        # A publish sent while the signal was on its way may still have been acknowledged by the old
        # master: only those sent once it was reaped count as "after the kill".
        dead_at = time.monotonic()
        wait_for(lambda: topology.failed_over(killed), 60, "another node to take over", interval=0.05)
        promoted_at = time.monotonic()
        wait_for(
            lambda: all(p.first_ack_sent_after(dead_at) for p in publishers) or _dead(publishers),
            60,
            "an acknowledged publish after the kill",
            interval=0.02,
        )
        time.sleep(after)
    finally:
        for publisher in publishers:
            publisher.stop()
    rows = {}
    for app, channel, publisher in zip(apps, channels, publishers, strict=True):
        if publisher.problem is not None:
            raise RuntimeError(f"publisher of {app} failed: {publisher.problem!r}")
        stored = topology.history_positions(channel_key(app, channel))
        resumed = publisher.first_ack_sent_after(dead_at)
        codes: dict[str, int] = {}
        for _n, code, _at in publisher.errors:
            codes[code] = codes.get(code, 0) + 1
        rows[app] = {
            "failover_s": round(resumed - killed_at, 3) if resumed else None,
            "kill_s": round(dead_at - killed_at, 4),  # SIGKILL sent → process reaped
            "promoted_s": round(promoted_at - killed_at, 3),  # when the topology itself names a new master
            "acked": len(publisher.acked),
            "acked_before_kill": sum(1 for _n, _p, _s, at in publisher.acked if at < killed_at),
            "lost": sum(1 for _n, position, _s, _a in publisher.acked if position not in stored),
            "errors": codes,
            "reconnects": publisher.reconnects,
        }
    topology.restore(killed)
    return rows


def _dead(publishers: list[AckedPublisher]) -> bool:
    return any(not p.is_alive() for p in publishers)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """min/median/max of the failover times of one app's runs, and the losses of each."""
    times = [r["failover_s"] for r in runs if r["failover_s"] is not None]
    codes = {code for r in runs for code in r["errors"]}
    return {
        "failovers": len(runs),
        "resumed": len(times),
        "failover_s_min": min(times) if times else None,
        "failover_s_median": round(statistics.median(times), 3) if times else None,
        "failover_s_max": max(times) if times else None,
        # When the deployment itself named the new master (Sentinels agreeing, or the slot map): the rest of
        # the failover time is the broker following it.
        "promoted_s_median": round(statistics.median(r["promoted_s"] for r in runs), 3) if runs else None,
        "lost_per_failover": [r["lost"] for r in runs],
        "errors": {code: sum(r["errors"].get(code, 0) for r in runs) for code in sorted(codes)},
        "acked_per_failover": [r["acked"] for r in runs],
        "runs": runs,
    }


def refusal(port: int, app: str, channel: str) -> str | None:
    """Why ``app`` cannot publish on this deployment at all (its error code), or None when it can."""
    publisher = Publisher(port, app)
    try:
        reply = publisher.request(pdu("rtm/publish", 2, {"channel": channel, "message": {"probe": True}}))
    finally:
        publisher.sock.close()
    if reply["action"] == "rtm/publish/ok":
        return None
    body = reply.get("body") or {}
    return body.get("code") or body.get("error") or reply["action"]


def measure_failovers(
    topology: Any, port: int, apps: list[str], count: int, window: int, before: float, after: float
) -> dict[str, dict[str, Any]]:
    """``count`` failovers of ``topology``; per app, :func:`summarise` of the runs. An app whose publishes
    are refused before any kill gets ``{"refused": code}`` instead: there is nothing to fail over."""
    refused = {app: code for app in apps if (code := refusal(port, app, "probe")) is not None}
    apps = [app for app in apps if app not in refused]
    per_app: dict[str, list[dict[str, Any]]] = {app: [] for app in apps}
    for run in range(count):
        rows = one_failover(topology, port, apps, run, window, before, after)
        for app, row in rows.items():
            per_app[app].append(row)
        print(
            f"  {topology.name} failover {run + 1}/{count}: "
            + "; ".join(
                f"{app} resumed after {row['failover_s']} s, lost {row['lost']}" for app, row in rows.items()
            ),
            flush=True,
        )
    summaries = {app: summarise(runs) for app, runs in per_app.items()}
    for app, code in refused.items():
        print(f"  {topology.name}: {app} not measured, every publish answered {code}", flush=True)
        summaries[app] = summarise([]) | {"refused": code}
    return summaries
