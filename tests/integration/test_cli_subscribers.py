"""``subscribe`` and ``monitor`` run until interrupted: silence is not an error, and a broker restart costs a
reconnect (said on stderr), not the process; with ``--position``, not a message either."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

from app.client import CobraClient
from tests.conftest import TEST_APP
from tests.support.processes import ROOT, BrokerProcess


class Lines:
    """A child's stream read line by line in a thread, so that a test waits for a line with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no matching line within {timeout}s; last lines: {self.seen[-20:]}"
                ) from None
            self.seen.append(line)
            if predicate(line):
                return line


def start_cli(*args: str) -> tuple[subprocess.Popen, Lines, Lines]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_") and k != "REDIS_URL"}
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    return process, Lines(process.stdout), Lines(process.stderr)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def client_flags(broker: BrokerProcess, test_apps, role: str = "pubsub", app: str = TEST_APP) -> list[str]:
    secret = test_apps[app].roles[role].secret
    return ["--endpoint", broker.endpoint, "--appkey", app, "--rolename", role, "--rolesecret", secret]


def publish(broker: BrokerProcess, test_apps, channel: str, message: object) -> str:
    secret = test_apps[TEST_APP].roles["pubsub"].secret
    with CobraClient(broker.endpoint, TEST_APP, "pubsub", secret) as client:
        return client.publish(channel, message)["position"]


def restart_on_the_same_port(broker: BrokerProcess, tmp_path) -> BrokerProcess:
    port = broker.port
    broker.signal(signal.SIGKILL)
    broker.stop()
    fresh = tmp_path / f"again-{port}"
    fresh.mkdir()
    return BrokerProcess(broker.redis_url, fresh, port=port)


def test_subscribe_without_timeout_outlives_15_silent_seconds(broker, test_apps, channel):
    process, out, err = start_cli(
        "subscribe", *client_flags(broker, test_apps), "--channel", channel, "--count", "1"
    )
    try:
        err.wait_for(lambda line: line.startswith("subscribed to"))
        time.sleep(15)  # longer than the client's 10 s request timeout that used to end the wait
        assert process.poll() is None, err.seen
        publish(broker, test_apps, channel, {"after": "silence"})
        assert json.loads(out.wait_for(lambda line: True)) == {"after": "silence"}
        assert process.wait(10) == 0
    finally:
        stop(process)


def test_subscribe_with_position_resumes_after_a_broker_restart_without_gap_or_duplicate(
    redis_server, test_apps, broker_factory, tmp_path, channel
):
    broker = BrokerProcess(redis_server.url, tmp_path).start()
    other = broker_factory()  # publishes while the first broker is down
    restarted = None
    before = publish(broker, test_apps, channel, {"n": 0})
    first = publish(broker, test_apps, channel, {"n": 1})
    process, out, err = start_cli(
        "subscribe",
        *client_flags(broker, test_apps),
        "--channel",
        channel,
        "--position",
        before,
        "--count",
        "3",
    )
    try:
        assert json.loads(out.wait_for(lambda line: True)) == {"n": 1}
        restarted = restart_on_the_same_port(broker, tmp_path)
        publish(other, test_apps, channel, {"n": 2})  # while no broker listens on the subscriber's port
        err.wait_for(lambda line: line.startswith("connection lost"))
        restarted.start()
        line = err.wait_for(lambda line: line.startswith("reconnected to"))
        assert f"resumed after position {first}" in line
        publish(restarted, test_apps, channel, {"n": 3})
        assert json.loads(out.wait_for(lambda line: True)) == {"n": 2}
        assert json.loads(out.wait_for(lambda line: True)) == {"n": 3}
        assert process.wait(10) == 0, err.seen
    finally:
        stop(process)
        broker.stop()
        if restarted is not None:
            restarted.stop()


def test_subscribe_without_position_reconnects_to_new_messages(redis_server, test_apps, tmp_path, channel):
    broker = BrokerProcess(redis_server.url, tmp_path).start()
    restarted = None
    process, out, err = start_cli(
        "subscribe", *client_flags(broker, test_apps), "--channel", channel, "--count", "1"
    )
    try:
        err.wait_for(lambda line: line.startswith("subscribed to"))
        restarted = restart_on_the_same_port(broker, tmp_path).start()
        assert "new messages only" in err.wait_for(lambda line: line.startswith("reconnected to"))
        publish(restarted, test_apps, channel, {"n": "after restart"})
        assert json.loads(out.wait_for(lambda line: True)) == {"n": "after restart"}
        assert process.wait(10) == 0, err.seen
    finally:
        stop(process)
        broker.stop()
        if restarted is not None:
            restarted.stop()


def test_monitor_on_the_stats_channel_reconnects_after_a_broker_restart(redis_server, test_apps, tmp_path):
    broker = BrokerProcess(redis_server.url, tmp_path).start()
    restarted = None
    process, out, err = start_cli(
        "monitor", "--source", "channel", "--interval", "0.5", "--endpoint", broker.endpoint,
        "--redis-url", redis_server.url,
    )  # fmt: skip
    try:
        out.wait_for(lambda line: line.startswith("cobra broker: "))
        restarted = restart_on_the_same_port(broker, tmp_path).start()
        err.wait_for(lambda line: line.startswith("reconnected to"), timeout=60)
        out.wait_for(lambda line: line.startswith("cobra broker: "))
        assert process.poll() is None
    finally:
        stop(process)
        broker.stop()
        if restarted is not None:
            restarted.stop()
