"""An engine that keeps everything in this process: history lists, live fan-out, resume (no Redis).

It implements :class:`~.interface.EngineAPI` the way the Redis engine does — positions ``"<ms>-<seq>"``
that increase per channel, retention by :class:`~.history.HistoryPolicy` (newest ``max(max_length, 1)``
entries, none older than ``max_age`` than the newest, an idle channel gone after ``max_age``), live
delivery through the Redis engine's own :class:`~.router.Router` (each distinct filter once), resume
decided by :func:`.resume.decide_resume` — so action handlers can be unit-tested against it. One process
only: it has no shards and nothing to reconnect.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..positions import START, parse_position
from ..shedding import EXPIRED_POSITION
from .errors import EngineError, shard_unavailable
from .history import REPLAY_LIMIT
from .interface import PublishCallback, ShardStatus
from .resume import decide_resume, history_window, select_recent
from .router import Router, prepare

if TYPE_CHECKING:
    from ..models import Shard
    from ..subscription import Subscription
    from .history import HistoryPolicy
    from .routes import Members

SHARD_NAME = "memory"


class _Channel:
    __slots__ = ("entries", "expires_at_ms", "last")

    def __init__(self) -> None:
        self.entries: list[tuple[str, bytes]] = []  # oldest first
        self.last: tuple[int, int] = (0, 0)  # positions keep increasing even after trimming
        self.expires_at_ms: int | None = None


class MemoryEngine:
    """``clock`` gives the time in seconds (positions are its milliseconds); tests may drive it.
    ``available = False`` makes it answer as a shard that is down (publishes and subscribes fail)."""

    def __init__(self, clock: Callable[[], float] = time.time, stats: Any = None) -> None:
        self.clock = clock
        self.available = True
        self.channels: dict[str, _Channel] = {}
        # The Redis engine's routing table and fan-out, fed by publish() instead of a Pub/Sub reader;
        # ``stats`` (an app.stats.Stats) counts what it delivers and sheds, as the Redis engine's does.
        self.router = Router(stats)

    @property
    def subscribers(self) -> dict[str, dict[Any, Members]]:
        """Channel key → its subscriptions grouped by filter (what tests look at)."""
        return {key.decode(): route.groups for key, route in self.router.routes.items()}

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _channel(self, key: str) -> _Channel | None:
        """The channel's history, or None when it has none (never written, deleted, or idle too long)."""
        channel = self.channels.get(key)
        if (
            channel is not None
            and channel.expires_at_ms is not None
            and self._now_ms() >= channel.expires_at_ms
        ):
            del self.channels[key]  # as Redis's PEXPIRE drops an idle stream
            return None
        return channel

    # ---------------------------------------------------------------- messages
    def publish(
        self,
        key: str,
        message: bytes,
        policy: HistoryPolicy,
        callback: PublishCallback,
        deliver: bool = True,
    ) -> None:
        if not self.available:
            callback(shard_unavailable(SHARD_NAME))
            return
        position = self._append(key, message, policy)
        if deliver:
            self.router.route_message(None, key.encode(), position.encode() + b" " + message)
        callback(position)

    def _append(self, key: str, message: bytes, policy: HistoryPolicy) -> str:
        channel = self._channel(key)
        if channel is None:
            channel = self.channels[key] = _Channel()
        now_ms = self._now_ms()
        last_ms, last_seq = channel.last
        # Like a stream id: the clock's milliseconds, a sequence within one (or a stalled clock).
        channel.last = (last_ms, last_seq + 1) if now_ms <= last_ms else (now_ms, 0)
        position = f"{channel.last[0]}-{channel.last[1]}"
        entries = channel.entries
        entries.append((position, message))
        del entries[: max(0, len(entries) - max(policy.max_length, 1))]
        if policy.max_age > 0:
            oldest_ms = channel.last[0] - policy.max_age * 1000
            while entries and _ms(entries[0][0]) < oldest_ms:
                del entries[0]
            channel.expires_at_ms = now_ms + policy.max_age * 1000
        else:
            channel.expires_at_ms = None
        return position

    def publish_and_wait(self, key: str, message: bytes, policy: HistoryPolicy, timeout: float = 5.0) -> str:
        outcome: list[str | EngineError] = []
        self.publish(key, message, policy, outcome.append)
        if isinstance(outcome[0], EngineError):
            raise outcome[0]
        return outcome[0]

    # ---------------------------------------------------------------- subscriptions
    def subscribe(self, sub: Subscription, replay: bool) -> str:
        if not self.available:
            raise shard_unavailable(SHARD_NAME)
        if replay:
            sub.begin_sync()
        self.router.add(sub, None)
        channel = self._channel(sub.key)
        return channel.entries[-1][0] if channel is not None and channel.entries else START

    def replay(self, sub: Subscription, position: str, policy: HistoryPolicy) -> None:
        channel = self._channel(sub.key)
        entries = channel.entries if channel is not None else []
        first = entries[0][0] if entries else None
        last = entries[-1][0] if entries else None
        decision = decide_resume(position, first, last, policy.replay)
        if decision.expired_at is not None:
            sub.position_expired(position, decision.expired_at)
            if sub.fast_forward:
                self.router.stats.on_shed(EXPIRED_POSITION, None, 0)
        replayed: list[tuple[str, bytes]] = []
        if decision.replay_after is not None:
            after = parse_position(decision.replay_after) or (0, 0)
            replayed = [e for e in entries if (parse_position(e[0]) or (0, 0)) > after][:REPLAY_LIMIT]
        sub.finish_sync(prepare(sub, replayed))

    def replay_recent(
        self, sub: Subscription, count: int | None, age: int | None, policy: HistoryPolicy
    ) -> None:
        channel = self._channel(sub.key)
        entries = channel.entries if channel is not None else []
        window = history_window(count, age, self._now_ms(), policy.replay, REPLAY_LIMIT)
        sub.finish_sync(prepare(sub, select_recent(entries, window)))

    def unsubscribe(self, sub: Subscription) -> None:
        sub.cancel()
        self.router.remove(sub)

    # ---------------------------------------------------------------- key/value
    def read(self, key: str, position: str | None = None) -> tuple[bytes | None, str | None]:
        if not self.available:
            raise shard_unavailable(SHARD_NAME)
        channel = self._channel(key)
        if channel is None or not channel.entries:
            return None, None
        if position is None:
            found, message = channel.entries[-1]
            return message, found
        for found, message in channel.entries:
            if found == position:
                return message, found
        return None, None

    def delete(self, key: str, app_key: str | None = None) -> None:
        if not self.available:
            raise shard_unavailable(SHARD_NAME)
        self.channels.pop(key, None)

    # ---------------------------------------------------------------- lifecycle: nothing to connect
    def configure(self, shards: Iterable[Shard], default_url: str) -> int:
        return 0

    def wait_ready(self, timeout: float) -> bool:
        return self.available

    def drain(self, timeout: float) -> bool:
        return True  # every publish is answered before publish() returns

    def stop(self, timeout: float = 5.0) -> None:
        pass

    def shard_statuses(self) -> list[ShardStatus]:
        return [ShardStatus(SHARD_NAME, self.available, 0)]

    def ping_shards(self, timeout: float) -> dict[str, str | None]:
        return {SHARD_NAME: None if self.available else "unreachable (memory engine marked unavailable)"}


def _ms(position: str) -> int:
    return int(position.partition("-")[0])
