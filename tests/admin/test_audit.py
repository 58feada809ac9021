"""The audit log: every change with who, when, from where and what; filterable; never a secret."""

from __future__ import annotations

from .conftest import unique


def test_changes_are_listed_newest_first_with_who_and_what(panel, admin_user, app_key):
    panel.post(f"/apps/{app_key}/roles/", {"name": "first", "permissions": ["read"]})
    panel.post(f"/apps/{app_key}/roles/first/rotate", {"grace_seconds": "5"})
    html = panel.get(f"/audit/?user={admin_user}").get_data(as_text=True)
    assert html.index("role.rotate") < html.index("role.create") < html.index(">login<")
    assert app_key in html
    assert "grace_seconds=5" in html


def test_filters_by_user_action_and_app(panel, admin_user, app_key, store):
    other_key = unique("other")
    panel.post("/apps/", {"key": other_key})
    try:
        panel.post(f"/apps/{app_key}/settings", {"history_max_length": "3"})
        by_app = panel.get("/audit/", query_string={"app": app_key}).get_data(as_text=True)
        assert "app.settings" in by_app and other_key not in by_app
        by_action = panel.get("/audit/", query_string={"action": "app.create", "user": admin_user})
        html = by_action.get_data(as_text=True)
        assert other_key in html and "app.settings" not in html
        by_prefix = panel.get("/audit/", query_string={"action": "app.", "user": admin_user}).get_data(
            as_text=True
        )
        assert "app.settings" in by_prefix and "app.create" in by_prefix and ">login<" not in by_prefix
        nobody = panel.get("/audit/", query_string={"user": unique("nobody")}).get_data(as_text=True)
        assert "No entry matches these filters." in nobody
    finally:
        store.delete_app(other_key)


def test_pages_go_back_in_time(panel, admin_user, app_key, monkeypatch):
    import admin.audit

    monkeypatch.setattr(admin.audit, "PAGE_SIZE", 2)
    for n in range(3):
        panel.post(f"/apps/{app_key}/settings", {"history_max_length": str(n)})
    first = panel.get("/audit/", query_string={"user": admin_user, "action": "app.settings"})
    html = first.get_data(as_text=True)
    assert html.count("history_max_length=") == 2 and "history_max_length=2" in html
    assert "Older entries" in html
    older_link = html.split('class="pager"><a class="button" href="')[1].split('"')[0].replace("&amp;", "&")
    older = panel.client.get(older_link).get_data(as_text=True)
    assert "history_max_length=0" in older and "history_max_length=2" not in older


def test_the_audit_page_escapes_what_it_shows(panel, store):
    store.append_audit(
        {"ts": "1", "user": "<b>x</b>", "action": "<i>a</i>", "app": "", "target": "", "details": "<script>"}
    )
    html = panel.get("/audit/").get_data(as_text=True)
    assert "<script>" not in html.split("<main")[1]
    assert "&lt;b&gt;x&lt;/b&gt;" in html


def test_a_bad_cursor_is_ignored(panel):
    assert panel.get("/audit/?before=not-an-id").status_code == 200
