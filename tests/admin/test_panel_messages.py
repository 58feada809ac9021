"""What the panel says: one clear message per refused rotation with the typed value kept, YAML errors with
their lines, one message per import with its warnings, and list cells without dangling separators."""

from __future__ import annotations

import html
import re
from dataclasses import replace

import pytest
import yaml

from app.models import PERMISSIONS, AppSettings, Role

from .conftest import unique


def grace_input(page: str, role: str) -> str:
    match = re.search(rf'<input[^>]*id="grace-{re.escape(role)}"[^>]*>', page)
    assert match, f"no grace field for {role}"
    return match.group(0)


@pytest.mark.parametrize("grace", ["soon", "-5", "99999999", "1.5"])
def test_a_refused_rotation_says_one_thing_and_keeps_what_was_typed(panel, store, app_key, grace):
    store.update_app(
        app_key, lambda a: replace(a, roles={**a.roles, "other": Role("other", "o" * 32, PERMISSIONS)})
    )
    response = panel.post(f"/apps/{app_key}/roles/pubsub/rotate", {"grace_seconds": grace})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Not a valid integer value" not in page
    message = "Secret of pubsub not rotated: Enter a whole number of seconds from 0 to 2592000 (30 days)."
    assert html.unescape(page).count(message) == 1
    assert page.count('class="error') + page.count('class="flash flash-error') == 1  # nothing else says it
    assert f'value="{grace}"' in grace_input(page, "pubsub")
    assert 'value="3600"' in grace_input(page, "other")  # other rows keep their default
    assert "rotate has-error" in page


def test_a_yaml_error_keeps_its_lines_escaped(panel):
    text = "apps:\n  a: <b>1</b>: 2"
    response = panel.post("/config/import", {"text": text})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    match = re.search(r'<pre class="error-text">(.*?)</pre>', page, re.S)
    assert match, "the YAML error is not preformatted"
    assert "<b>" not in match.group(1) and "&lt;b&gt;1&lt;/b&gt;" in match.group(1)  # shown, as text
    lines = html.unescape(match.group(1)).splitlines()
    assert lines[0] == "Not a valid apps.yaml: not valid YAML: mapping values are not allowed here"
    assert "line 2, column 14" in lines[1]
    assert lines[2:4] == ["      a: <b>1</b>: 2", "                 ^"]  # the caret under the column


def test_a_successful_import_says_so_once_and_shows_its_warnings(panel, store):
    key = unique("warn")
    text = yaml.safe_dump(
        {
            "apps": {
                key: {
                    "roles": {
                        "mute": {"secret": "m" * 24, "permissions": []},
                        "pub": {"secret": "p" * 24, "permissions": ["publish"]},
                    }
                }
            }
        }
    )
    try:
        response = panel.post("/config/import", {"text": text})
        assert response.status_code == 200
        page = html.unescape(response.get_data(as_text=True))
        assert page.count("Imported") == 1 and "Imported." in page  # the summary, no flash besides
        warnings = re.search(r'<ul class="warnings" id="import-warnings">(.*?)</ul>', page, re.S)
        assert warnings, "the import's warnings are not shown"
        items = re.findall(r"<li>(.*?)</li>", warnings.group(1), re.S)
        assert len(items) == 1 and "role 'mute' has no permissions" in items[0]
        assert store.get_app(key).roles["mute"].permissions == ()
        # A check-only run shows the same warnings and changes nothing.
        store.delete_app(key)
        checked = html.unescape(panel.post("/config/import", {"text": text, "dry_run": "y"}).get_data(True))
        assert "role 'mute' has no permissions" in checked and store.get_app(key) is None
    finally:
        store.delete_app(key)


def test_list_cells_have_no_dangling_separators(panel, store, app_key):
    cases = [
        (AppSettings(publish_rate=2.5), "default", "2.5/s"),
        (AppSettings(max_connections=10), "default", "10 conn"),
        (AppSettings(max_connections=10, publish_rate=2.0), "default", "10 conn · 2/s"),
        (AppSettings(history_max_age=60), "60 s", "defaults"),
        (AppSettings(history_max_length=5, history_max_age=60), "5 msg · 60 s", "defaults"),
    ]
    for settings, history, limits in cases:
        store.update_app(app_key, lambda a, s=settings: replace(a, settings=s))
        page = panel.get("/apps/").get_data(as_text=True)
        row = re.search(rf'<tr>\s*<td><a class="strong" href="/admin/apps/{app_key}">.*?</tr>', page, re.S)
        assert row, "no row for the app"
        cells = [
            " ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
        ]
        assert cells[3:5] == [history, limits], settings
        assert not any(c.startswith("·") or c.endswith("·") for c in cells), cells
