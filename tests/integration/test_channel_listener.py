"""The Redis channel follower (config changes, cluster control) logs every failure it survives."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable

import pytest
import redis

from app.channel_listener import listen_forever
from app.embedded_redis import RedisProcess
from tests.support.processes import wait_until

WHAT = "test listener"


class Stop(BaseException):
    """Raised by a callback to end the listener, which otherwise never returns (it is not an Exception)."""


def follow(
    client: redis.Redis, channel: str, on_message: Callable[[bytes], None]
) -> tuple[threading.Thread, queue.Queue]:
    """The listener in a thread (redis-py blocks; gevent is not patched in the test process) and a queue
    that gets one item per (re)subscription."""
    subscribed: queue.Queue = queue.Queue()

    def run() -> None:
        try:
            listen_forever(client, channel, on_message, WHAT, lambda: subscribed.put(True), retry_delay=0.1)
        except Stop:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, subscribed


def stop_on(data: bytes) -> None:
    if data == b"stop":
        raise Stop
    raise ValueError(f"cannot handle {data!r}")


def test_a_failing_callback_is_logged_with_its_exception_and_the_listener_starts_over(redis_server, caplog):
    caplog.set_level(logging.DEBUG, logger="app.channel_listener")
    client = redis.Redis.from_url(redis_server.url)
    channel = f"listener-{uuid.uuid4().hex[:8]}"
    thread, subscribed = follow(client, channel, stop_on)
    assert subscribed.get(timeout=10)
    client.publish(channel, b"boom")
    assert subscribed.get(timeout=10)  # started over
    client.publish(channel, b"stop")
    thread.join(10)
    assert not thread.is_alive()
    [failure] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failure.getMessage() == f"{WHAT} failed; restarting it"
    assert failure.exc_info is not None and "cannot handle b'boom'" in str(failure.exc_info[1])


def test_a_lost_redis_is_logged_once_as_a_warning_and_followed_again(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="app.channel_listener")
    server = RedisProcess(tmp_path / "redis")
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        thread, subscribed = follow(client, "listener", stop_on)
        assert subscribed.get(timeout=10)
        server.stop()

        def retried() -> bool:
            return any(
                r.levelno == logging.DEBUG and "Redis failed" in r.getMessage() for r in caplog.records
            )

        wait_until(retried, timeout=10, message="retries logged")
        server.start()
        assert subscribed.get(timeout=10)
        client.publish("listener", b"stop")
        thread.join(10)
        assert not thread.is_alive()
    finally:
        server.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(f"{WHAT}: Redis failed (ConnectionError: ")
    assert any(r.getMessage() == f"{WHAT}: subscribed to listener again" for r in caplog.records)


@pytest.fixture(autouse=True)
def _no_leftover_thread():
    before = set(threading.enumerate())
    yield
    assert not [t for t in threading.enumerate() if t not in before and t.is_alive()]
