"""End to end in a real headless Chromium (Debian's, driven by Playwright): an operator logs in, creates an
app and a role, copies the secret into a real client, rotates it, adds a shard and watches the live tail.

Chromium missing: skipped locally, a failure in CI (``CI=true``). ``COBRA_SCREENSHOTS=docs/screenshots``
also writes the screenshots kept in the repository.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from admin.users import set_password
from app.client import CobraClient
from app.config_store import ConfigStore
from app.models import Shard
from tests.support.processes import BrokerProcess, RedisProcess, wait_until

from .conftest import PASSWORD
from .test_roles import authenticates

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
APP = "game-telemetry"
CHANNEL = "engine_fps_id"


def browser_or_skip():
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "playwright is not installed (pip install -r requirements-dev.txt)"
    if problem is None and not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        problem = f"{CHROMIUM} is missing (scripts/install-browser.sh installs it)"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run in CI: {problem}")
        pytest.skip(problem)
    return sync_playwright


@pytest.fixture
def cluster(tmp_path: Path):
    """A config Redis, a second Redis to become a shard, and a broker serving the panel."""
    config = RedisProcess(tmp_path / "config")
    config.start()
    spare = RedisProcess(tmp_path / "spare")
    spare.start()
    broker = BrokerProcess(config.url, tmp_path)
    try:
        broker.start()
        store = ConfigStore.from_url(config.url)
        set_password(store, "operator", PASSWORD)
        yield broker, store, config, spare
    finally:
        broker.stop()
        spare.stop()
        config.stop()


@pytest.fixture
def page(tmp_path: Path, cluster):
    sync_playwright = browser_or_skip()
    broker = cluster[0]
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=shutil.which("chromium") or CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1360, "height": 900},
        )
        try:
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=broker.http)
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(30_000)
            page.on("dialog", lambda dialog: dialog.accept())  # the "are you sure?" confirmations
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page
            assert errors == [], errors
        finally:
            context.close()


class Screenshots:
    def __init__(self, tmp_path: Path) -> None:
        self.folders = [tmp_path / "screenshots"]
        if os.environ.get("COBRA_SCREENSHOTS"):
            self.folders.append(Path(os.environ["COBRA_SCREENSHOTS"]))
        for folder in self.folders:
            folder.mkdir(parents=True, exist_ok=True)

    def take(self, page, name: str, full_page: bool = False) -> None:
        data = page.screenshot(full_page=full_page)
        for folder in self.folders:
            (folder / f"{name}.png").write_bytes(data)


def reveal_secret(page, role: str) -> str:
    row = page.locator(f'[data-role-row="{role}"]')
    field = row.locator(".secret-value")
    if field.get_attribute("type") == "text":  # hide first: Reveal toggles
        row.get_by_role("button", name="Hide").click()
    row.get_by_role("button", name="Reveal").click()
    wait_until(
        lambda: field.get_attribute("type") == "text" and len(field.input_value()) == 32, message="revealed"
    )
    return field.input_value()


def test_an_operator_manages_a_live_broker_in_the_browser(page, cluster, tmp_path):
    broker, store, config, spare = cluster
    shots = Screenshots(tmp_path)
    base = broker.http + "/admin/"

    # --- log in
    page.goto(base)
    assert page.url.startswith(base + "login")
    shots.take(page, "login")
    page.fill("#username", "operator")
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base)

    # --- create an app and a role
    page.get_by_role("link", name="Apps", exact=True).click()
    page.fill("#key", APP)
    page.get_by_role("button", name="Create app").click()
    page.wait_for_url(base + f"apps/{APP}")
    page.fill("#name", "pubsub")
    page.get_by_role("button", name="Add role with a generated secret").click()
    page.locator('[data-role-row="pubsub"]').wait_for()
    assert store.get_app(APP).roles["pubsub"].permissions == ("publish", "subscribe", "unsubscribe")

    # --- copy its secret: reveal shows it, the copy button puts it in the clipboard
    secret = reveal_secret(page, "pubsub")
    assert secret == store.get_app(APP).roles["pubsub"].secret
    page.locator('[data-role-row="pubsub"]').get_by_role("button", name="Copy").click()
    wait_until(
        lambda: page.evaluate("navigator.clipboard.readText()") == secret, message="secret in the clipboard"
    )

    # --- a real client connects with it
    wait_until(lambda: authenticates(broker, APP, "pubsub", secret), message="the client authenticates")
    page.get_by_role("button", name="Hide").click()

    # --- a second, narrower role: subscribe only, to some channels
    page.fill("#name", "dashboards")
    page.uncheck("input[name=permissions][value=publish]")
    page.uncheck("input[name=permissions][value=unsubscribe]")
    page.fill("#channels", "engine_*")
    page.get_by_role("button", name="Add role with a generated secret").click()
    page.locator('[data-role-row="dashboards"]').wait_for()
    dashboards = store.get_app(APP).roles["dashboards"]
    assert (dashboards.permissions, dashboards.channels) == (("subscribe",), ("engine_*",))

    # --- rotate with a short grace period: both work, then only the new one
    page.locator('[data-role-row="pubsub"] input[name="grace_seconds"]').fill("8")
    page.locator('[data-role-row="pubsub"]').get_by_role("button", name="Rotate").click()
    page.get_by_text("Secret of pubsub rotated").wait_for()
    new_secret = reveal_secret(page, "pubsub")
    assert new_secret != secret
    wait_until(lambda: authenticates(broker, APP, "pubsub", new_secret), message="the new secret works")
    assert authenticates(broker, APP, "pubsub", secret), "the old secret works during the grace period"
    page.get_by_role("button", name="Hide").click()
    assert page.get_by_text("Previous secret still accepted until").is_visible()
    shots.take(page, "app-detail", full_page=True)
    wait_until(
        lambda: not authenticates(broker, APP, "pubsub", secret),
        timeout=40,
        interval=0.5,
        message="the old secret stops working",
    )
    assert authenticates(broker, APP, "pubsub", new_secret)

    # --- add a shard: preview, then save
    page.get_by_role("link", name="Shards").click()
    for _ in range(2):
        page.get_by_role("button", name="+ Add shard").click()
    names, urls = page.locator(".shard-name"), page.locator(".shard-url")
    names.nth(0).fill("main")
    urls.nth(0).fill(config.url)
    names.nth(1).fill("second")
    urls.nth(1).fill(spare.url)
    page.get_by_role("button", name="Check and preview").click()
    page.locator("#move-fraction").wait_for()
    shots.take(page, "shards", full_page=True)
    page.get_by_role("button", name="Save this list").click()
    page.get_by_text("Shard list saved").wait_for()
    assert store.shards() == (Shard("main", config.url), Shard("second", spare.url))
    assert page.locator("#shard-health .status.ok").count() == 2

    # --- the live tail shows a published message (from whichever shard carries the channel now)
    publisher = CobraClient(broker.endpoint, APP, "pubsub", new_secret)
    subscriber = CobraClient(broker.endpoint, APP, "pubsub", new_secret)
    subscriber.subscribe(CHANNEL)
    page.get_by_role("link", name="Live tail").click()
    page.select_option("#app", APP)
    page.fill("#channel", CHANNEL)
    page.fill("#filter", f"select * from `{CHANNEL}` where data.fps < 30")
    page.get_by_role("button", name="Start tail").click()
    page.locator("#tail[data-ready='1']").wait_for()
    publisher.publish(CHANNEL, {"device": {"model": "pixel"}, "data": {"fps": 60}})
    publisher.publish(CHANNEL, {"device": {"model": "<img src=x onerror=alert(1)>"}, "data": {"fps": 24.5}})
    item = page.locator(".tail-item").first
    item.wait_for()
    assert '"fps": 24.5' in item.inner_text()
    assert "<img src=x onerror=alert(1)>" in item.inner_text()  # shown as text...
    assert page.locator(".tail-log img").count() == 0  # ...never as markup
    assert page.locator(".tail-item").count() == 1  # the filter dropped the fast frame
    shots.take(page, "live-tail")

    # --- the app list counts live connections across broker processes
    page.get_by_role("link", name="Apps", exact=True).click()

    def counted() -> bool:
        page.reload()
        return page.inner_text(f'[data-app-connections="{APP}"]') == "2"  # the publisher and the subscriber

    wait_until(counted, timeout=20, interval=0.5, message="two connections counted")
    shots.take(page, "apps")

    # --- the dashboard charts the traffic of every broker process
    stop = threading.Event()

    def traffic():
        n = 0
        while not stop.is_set():
            publisher.publish(CHANNEL, {"data": {"fps": 20 + n % 40}})
            publisher.publish("engine_memory_id", {"data": {"mb": 512 + n % 64}})
            n += 1
            stop.wait(0.02)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        page.get_by_role("link", name="Dashboard").click()
        page.locator("#apps-stats a", has_text=APP).wait_for()
        wait_until(
            lambda: float(page.inner_text("#total-publishes") or 0) > 0,
            timeout=30,
            interval=0.5,
            message="publish rates on the dashboard",
        )
        wait_until(
            lambda: len((page.get_attribute("#spark-publishes polyline", "points") or "").split()) >= 6,
            timeout=30,
            interval=0.5,
            message="a few chart points",
        )
        assert page.locator("#channels-stats td", has_text=CHANNEL).count() >= 1
        shots.take(page, "dashboard")
    finally:
        stop.set()
        sender.join(5)

    # --- the connection list, and its disconnect button
    page.get_by_role("link", name="Connections").click()
    row = page.locator(f'tr[data-connection="{subscriber.connection_id}"]')
    publisher_row = page.locator(f'tr[data-connection="{publisher.connection_id}"]')
    subscriber.subscribe("engine_memory_id")  # a second subscription, listed within a heartbeat

    def subs_shown() -> bool:
        page.reload()
        return (
            row.locator("td.num").inner_text() == "2" and publisher_row.locator("td.num").inner_text() == "0"
        )

    wait_until(subs_shown, timeout=20, interval=0.5, message="the Subs column counts live subscriptions")
    row.get_by_role("button", name="Disconnect").click()
    page.get_by_text(f"to close connection {subscriber.connection_id}").wait_for()
    assert row.count() == 0  # not listed under the success flash
    assert publisher_row.count() == 1
    wait_until(lambda: _closed(subscriber), timeout=20, message="the connection is closed")
    page.reload()
    assert row.count() == 0

    # --- logging out ends the session
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(base + "login")
    page.goto(base + "apps/")
    assert page.url.startswith(base + "login")

    publisher.close()
    for value in (secret, new_secret, PASSWORD):
        assert value not in broker.output()


def _closed(client: CobraClient) -> bool:
    from websockets.exceptions import ConnectionClosed

    try:
        while True:
            client.receive(timeout=1)
    except ConnectionClosed:
        return True
    except TimeoutError:
        return False
