"""An aggregated view in the live tail, in a real headless Chromium: an operator types a GROUP BY query and
sees each window's rows as a table that the next window replaces in place."""

from __future__ import annotations

import threading

import pytest

from app.client import CobraClient
from app.models import PERMISSIONS, App, Role
from tests.support.processes import wait_until

from .conftest import PASSWORD
from .test_browser import APP, CHANNEL, Screenshots, cluster, page  # noqa: F401 (fixtures)
from .test_roles import authenticates

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SECRET = "v" * 32


def table_rows(browser_page) -> list[list[str]]:
    # Read in one go, in the page: the table may be replaced between two locator calls.
    return browser_page.evaluate(
        "() => [...document.querySelectorAll('#tail-window-table tbody tr')]"
        ".map((tr) => [...tr.cells].map((td) => td.textContent))"
    )


def test_the_live_tail_shows_an_aggregated_view_as_a_table_updated_each_window(page, cluster, tmp_path):  # noqa: F811
    broker, store, _config, _spare = cluster
    store.put_app(App(key=APP, roles={"pubsub": Role("pubsub", SECRET, PERMISSIONS)}))
    wait_until(lambda: authenticates(broker, APP, "pubsub", SECRET), message="the broker knows the app")
    shots = Screenshots(tmp_path)
    base = broker.http + "/admin/"
    page.goto(base)
    page.fill("#username", "operator")
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base)

    page.get_by_role("link", name="Live tail").click()
    page.select_option("#app", APP)
    page.fill(
        "#filter",
        f"SELECT device.model, AVG(data.fps) AS fps, COUNT(*) AS frames FROM `{CHANNEL}` "
        "WHERE data.fps > 0 GROUP BY device.model",
    )
    page.get_by_role("button", name="Start tail").click()
    page.locator("#tail[data-ready='1']").wait_for()
    assert page.locator("#tail-window").is_hidden()  # nothing until a window ends

    publisher = CobraClient(broker.endpoint, APP, "pubsub", SECRET)
    stop = threading.Event()

    def traffic(models: tuple[str, ...]) -> None:
        while not stop.is_set():
            for model in models:
                publisher.publish(CHANNEL, {"device": {"model": model}, "data": {"fps": 30}})
            stop.wait(0.05)

    sender = threading.Thread(target=traffic, args=(("pixel", "<b>galaxy</b>"),), daemon=True)
    sender.start()
    try:
        wait_until(
            lambda: [row[0] for row in table_rows(page)] == ["<b>galaxy</b>", "pixel"],
            timeout=30,
            interval=0.3,
            message="one row per device model, ordered by model",
        )
        headers = [cell.text_content() for cell in page.locator("#tail-window-table thead th").all()]
        assert headers == ["device.model", "fps", "frames"]
        assert all(row[1] == "30" and int(row[2]) >= 1 for row in table_rows(page))
        assert page.locator("#tail-window-table b").count() == 0  # a value is text, never markup
        assert "ending" in page.inner_text("#tail-window-meta")
        first = int(page.get_attribute("#tail-window", "data-windows") or 0)
        shots.take(page, "live-tail-view")
    finally:
        stop.set()
        sender.join(5)

    # A different traffic mix: the next windows replace the table in place (one table, new rows).
    stop.clear()
    sender = threading.Thread(target=traffic, args=(("iphone",),), daemon=True)
    sender.start()
    try:
        wait_until(
            lambda: [row[0] for row in table_rows(page)] == ["iphone"],
            timeout=30,
            interval=0.3,
            message="the table shows only the latest window",
        )
        assert int(page.get_attribute("#tail-window", "data-windows") or 0) > first
        assert page.locator("#tail-window-table").count() == 1
        assert page.locator(".tail-item").count() == 0  # no per-message list for a view
    finally:
        stop.set()
        sender.join(5)
        publisher.close()
