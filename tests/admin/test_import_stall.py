"""A 2 MB apps.yaml imported through the panel of a running broker must not stall the broker's other
clients: the parsing and checking run in gevent's thread pool, so a WebSocket client pinging every 10 ms
keeps getting its pongs throughout the import."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from admin.users import set_password
from app.config_store import ConfigStore, dump_apps_yaml
from app.models import PERMISSIONS, App, Role
from tests.support.gunicorn import open_client
from tests.support.panel_http import PanelBrowser
from tests.support.processes import BrokerProcess, RedisProcess

from .conftest import PASSWORD

pytestmark = pytest.mark.slow

BULK_APPS = 8600  # ~2.0 MB of YAML, just under the panel's upload limit (MAX_CONTENT_LENGTH, 2 MiB)
LARGEST_GAP = 1.0  # seconds: generous on a loaded machine; parsing the file on the event loop took ~5 s


class Ticker(threading.Thread):
    """Pings the broker every 10 ms over an authenticated WebSocket; records when each pong came back."""

    def __init__(self, client) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.pongs: list[float] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                if not self.client.ws.ping().wait(60):
                    raise AssertionError("no pong within 60 s")
                self.pongs.append(time.monotonic())
                time.sleep(0.01)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def largest_gap(self, start: float, end: float) -> float:
        times = [start, *(t for t in self.pongs if start <= t <= end), end]
        return max(b - a for a, b in itertools.pairwise(times))


@pytest.fixture
def broker_on_own_redis(tmp_path: Path) -> Iterator[tuple[BrokerProcess, ConfigStore]]:
    """A broker on a Redis of its own: the bulk import must not leave 9,000 apps in the shared store."""
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    try:
        store = ConfigStore.from_url(redis.url)
        store.put_app(App(key="ticker-app", roles={"pubsub": Role("pubsub", "t" * 32, PERMISSIONS)}))
        set_password(store, "importer", PASSWORD)
        broker = BrokerProcess(redis.url, tmp_path).start()
        try:
            yield broker, store
        finally:
            broker.stop()
    finally:
        redis.stop()


def test_a_large_import_does_not_stall_the_other_clients(broker_on_own_redis):
    broker, store = broker_on_own_redis
    apps = [
        App(key=f"bulk-{n:05d}", roles={"pubsub": Role("pubsub", f"{n:032d}", PERMISSIONS)})
        for n in range(BULK_APPS)
    ]
    text = dump_apps_yaml(apps)
    assert 1_990_000 < len(text) < (2 << 20) - 4096
    browser = PanelBrowser(broker.port)
    assert browser.login("importer", PASSWORD) == 302
    token = browser.token("/admin/config/")
    client, _ = open_client(broker.endpoint, "ticker-app", "pubsub", "t" * 32)
    ticker = Ticker(client)
    ticker.start()
    try:
        deadline = time.monotonic() + 30
        while len(ticker.pongs) < 20:  # ticking before the import starts
            assert time.monotonic() < deadline and ticker.error is None, ticker.error
            time.sleep(0.05)
        start = time.monotonic()
        status, html = browser.upload(
            "/admin/config/import", {"csrf_token": token}, "file", "apps.yaml", text.encode()
        )
        end = time.monotonic()
        assert status == 200, html[-2000:]
        assert sum(key.startswith("bulk-") for key in store.list_apps()) == BULK_APPS
    finally:
        ticker.stopping.set()
        ticker.join(90)
        client.close()
    assert ticker.error is None, ticker.error
    ticks = sum(1 for t in ticker.pongs if start <= t <= end)
    gap = ticker.largest_gap(start, end)
    assert ticks >= 2 and gap < LARGEST_GAP, (
        f"{ticks} pongs during a {end - start:.1f} s import, largest gap {gap:.2f} s"
    )
