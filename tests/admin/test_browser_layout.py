"""The panel's layout in a real headless Chromium at phone width (390 px) and at desktop width: the nav
overlaps nothing and every link of it stays on screen, and no table makes the page scroll sideways (a wide
table scrolls inside its own container instead).

``COBRA_SCREENSHOTS=docs/screenshots`` also writes ``phone-app-detail.png`` and ``desktop-apps.png`` into
the repository.
"""

from __future__ import annotations

import pytest

from app.models import PERMISSIONS, App, AppSettings, RepublishRule, Role

from . import test_browser
from .conftest import PASSWORD

# The broker, its Redis and the Chromium page of the end-to-end test, shared as they are.
cluster = test_browser.cluster
page = test_browser.page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1360, "height": 900}
WIDE_APP = "fleet-telemetry-with-a-rather-long-app-key"

# Every problem of the page's layout, as text (an empty list: none). A table may be wider than the
# viewport only inside an ancestor that scrolls sideways and itself fits in the viewport.
LAYOUT_PROBLEMS = """
() => {
  const problems = [];
  const width = document.documentElement.clientWidth;
  const box = (el) => el.getBoundingClientRect();
  const classes = (el) => typeof el.className === "string" && el.className.trim()
    ? "." + el.className.trim().split(/\\s+/).join(".") : "";
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + classes(el);
  const visible = (el) => {
    const r = box(el), style = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && style.visibility !== "hidden" && style.display !== "none";
  };
  const overlap = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5
    && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  if (document.documentElement.scrollWidth > width) {
    problems.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} > ${width} px`);
  }
  const nav = document.querySelector(".mainnav");
  if (nav) {
    const navBox = box(nav);
    for (const el of document.body.querySelectorAll("*")) {
      if (el.contains(nav) || nav.contains(el) || !visible(el)) continue;
      if (overlap(box(el), navBox)) problems.push(`${name(el)} overlaps the nav`);
    }
    const links = [...nav.querySelectorAll("a")];
    links.forEach((a, i) => {
      const r = box(a);
      if (r.left < 0 || r.right > width) problems.push(`nav link ${a.textContent} is off screen`);
      for (const b of links.slice(i + 1)) {
        if (overlap(r, box(b))) problems.push(`nav links ${a.textContent} and ${b.textContent} overlap`);
      }
    });
  }
  for (const table of document.querySelectorAll("table")) {
    if (!visible(table)) continue;
    let container = table.parentElement;
    while (container && container !== document.body
           && !["auto", "scroll"].includes(getComputedStyle(container).overflowX)) {
      container = container.parentElement;
    }
    const limit = container && container !== document.body ? box(container) : { left: 0, right: width };
    if (limit.left < -0.5 || limit.right > width + 0.5) {
      problems.push(`the scroll container of ${name(table)} is wider than the viewport`);
    }
    const r = box(table);
    const scrolls = container && container !== document.body;
    if (!scrolls && (r.left < -0.5 || r.right > width + 0.5)) {
      problems.push(`${name(table)} spills out of the viewport (${Math.round(r.right)} > ${width} px)`);
    }
  }
  return problems;
}
"""


def _wide_app() -> App:
    roles = {
        name: Role(name, (name[0] * 32)[:32], PERMISSIONS, ("engine_*", "telemetry.devices.*"))
        for name in ("pubsub", "dashboards-readonly")
    }
    rules = (RepublishRule("select device.model from `engine_fps_id` where data.fps < 30", "slow_frames"),)
    settings = AppSettings(history_max_length=500, publish_rate=2.5, republish_rules=rules)
    return App(key=WIDE_APP, roles=roles, settings=settings)


def _log_in(page, base: str) -> None:
    page.goto(base + "login")
    page.fill("#username", "operator")
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base)


def test_no_page_overlaps_its_nav_or_spills_a_table_at_phone_or_desktop_width(page, cluster, tmp_path):
    broker, store, _, _ = cluster
    store.put_app(_wide_app())
    shots = test_browser.Screenshots(tmp_path)
    base = broker.http + "/admin/"
    problems = {}
    page.set_viewport_size(PHONE)
    page.goto(base + "login")
    if found := page.evaluate(LAYOUT_PROBLEMS):
        problems["390 px /admin/login"] = found
    _log_in(page, base)
    pages = [
        "",
        "apps/",
        f"apps/{WIDE_APP}",
        f"apps/{WIDE_APP}/roles/pubsub/edit",
        "shards/",
        "connections/",
        "tail/",
        "audit/",
        "config/",
        "users/",
    ]
    for viewport in (PHONE, DESKTOP):
        page.set_viewport_size(viewport)
        for path in pages:
            page.goto(base + path)
            if path == "":
                page.locator("#apps-stats a", has_text=WIDE_APP).wait_for()
            found = page.evaluate(LAYOUT_PROBLEMS)
            # Every page at every width, in the test's folder only: what a failure looked like.
            slug = path.strip("/").replace("/", "_") or "dashboard"
            page.screenshot(path=str(tmp_path / "layout" / f"{viewport['width']}-{slug}.png"), full_page=True)
            if found:
                problems[f"{viewport['width']} px /admin/{path}"] = found
    # A refused import at phone width: the YAML error keeps its lines and scrolls inside its box.
    page.set_viewport_size(PHONE)
    page.goto(base + "config/")
    page.fill("#text", "apps:\n  telemetry: {roles: {pub: {secret: abc, permissions: [publish]}}: x")
    page.get_by_role("button", name="Import").click()
    error = page.locator("pre.error-text")
    error.wait_for()
    assert len(error.inner_text().splitlines()) >= 3
    if found := page.evaluate(LAYOUT_PROBLEMS):
        problems["390 px, a refused import"] = found
    page.screenshot(path=str(tmp_path / "layout" / "390-import-error.png"))
    page.goto(base + f"apps/{WIDE_APP}")
    shots.take(page, "phone-app-detail")
    page.set_viewport_size(DESKTOP)
    page.goto(base + "apps/")
    shots.take(page, "desktop-apps")
    assert problems == {}, "\n".join(f"{where}: {found}" for where, found in problems.items())
