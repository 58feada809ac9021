"""Apps: list, create (generated or chosen key), settings, republish rules, deletion with confirmation."""

from __future__ import annotations

import re

from app.models import App, RepublishRule, Role

from .conftest import audit_entries, unique


def test_the_list_shows_every_app_with_its_roles(panel, app_key):
    html = panel.get("/apps/").get_data(as_text=True)
    assert f'href="/admin/apps/{app_key}"' in html
    assert "pubsub" in html


def test_creating_an_app_with_a_generated_key(panel, store, admin_user):
    response = panel.post("/apps/", {"key": ""})
    assert response.status_code == 302
    key = response.headers["Location"].rsplit("/", 1)[1]
    try:
        assert re.fullmatch(r"[0-9a-f]{32}", key)
        assert store.get_app(key) == App(key=key)
        assert any(e["action"] == "app.create" and e["app"] == key for e in audit_entries(store, admin_user))
    finally:
        store.delete_app(key)


def test_creating_an_app_with_a_chosen_key(panel, store):
    key = unique("chosen")
    try:
        response = panel.post("/apps/", {"key": key})
        assert response.headers["Location"] == f"/admin/apps/{key}"
        page = panel.get(f"/apps/{key}").get_data(as_text=True)
        assert f"App {key} created" in page
        assert "No role yet" in page
    finally:
        store.delete_app(key)


def test_an_invalid_app_key_is_refused(panel):
    response = panel.post("/apps/", {"key": "no spaces/or slashes"})
    assert response.status_code == 400
    assert "app key must be 1-64 characters" in response.get_data(as_text=True)


def test_an_existing_app_key_is_refused_not_replaced(panel, store, app_key):
    response = panel.post("/apps/", {"key": app_key})
    assert response.status_code == 400
    assert "already exists" in response.get_data(as_text=True)
    assert "pubsub" in store.get_app(app_key).roles


def test_an_unknown_app_is_a_404(panel):
    assert panel.get("/apps/no-such-app").status_code == 404
    assert panel.post("/apps/no-such-app/settings", {"history_max_length": "1"}).status_code == 404


def test_the_detail_page_shows_roles_settings_and_rules(panel, app_key):
    html = panel.get(f"/apps/{app_key}").get_data(as_text=True)
    for section in ('id="roles"', 'id="settings"', 'id="republish"', 'data-role="pubsub"'):
        assert section in html
    assert "s" * 32 not in html  # secrets are fetched on demand, never in the page


def test_saving_settings(panel, store, app_key, admin_user):
    response = panel.post(
        f"/apps/{app_key}/settings",
        {
            "history_max_length": "50",
            "history_max_age": "600",
            "max_connections": "",
            "max_connections_per_ip": "7",
            "max_subscriptions": "20",
            "publish_rate": "2.5",
            "max_message_size": "4096",
            "send_queue_max_bytes": "1048576",
        },
    )
    assert response.status_code == 302
    settings = store.get_app(app_key).settings
    assert settings.history_max_length == 50
    assert settings.history_max_age == 600
    assert settings.max_connections is None
    assert settings.max_connections_per_ip == 7
    assert settings.publish_rate == 2.5
    assert settings.max_message_size == 4096
    assert settings.send_queue_max_bytes == 1 << 20
    entry = next(e for e in audit_entries(store, admin_user) if e["action"] == "app.settings")
    assert "history_max_length=50" in entry["details"]


def test_saving_durability_replicated_with_its_replicas_and_timeout(panel, store, app_key):
    response = panel.post(
        f"/apps/{app_key}/settings",
        {"durability": "replicated", "min_replicas": "2", "replication_timeout": "0.5"},
    )
    assert response.status_code == 302
    app = store.get_app(app_key)
    saved = (app.durability, app.settings.min_replicas, app.settings.replication_timeout)
    assert saved == ("replicated", 2, 0.5)
    assert 'selected value="replicated"' in panel.get(f"/apps/{app_key}").get_data(as_text=True)
    assert panel.post(f"/apps/{app_key}/settings", {"durability": "quorum"}).status_code == 400
    panel.post(f"/apps/{app_key}/settings", {"durability": "leader"})
    assert store.get_app(app_key).durability == "leader"


def test_settings_keep_the_republish_rules(panel, store, app_key):
    rule = RepublishRule("select * from `a`", "b")
    store.update_app(
        app_key, lambda app: App(app.key, app.roles, type(app.settings)(republish_rules=(rule,)))
    )
    panel.post(f"/apps/{app_key}/settings", {"history_max_length": "5"})
    assert store.get_app(app_key).settings.republish_rules == (rule,)


def test_invalid_settings_are_shown_with_their_errors(panel, store, app_key):
    response = panel.post(f"/apps/{app_key}/settings", {"history_max_length": "-1", "publish_rate": "fast"})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Number must be between 0 and 10000000." in html
    assert "Not a valid decimal value." in html
    assert store.get_app(app_key).settings.history_max_length is None


def test_adding_and_removing_a_republish_rule(panel, store, app_key, admin_user):
    expression = "select data.fps from `engine_fps_id` where data.fps < 30"
    response = panel.post(f"/apps/{app_key}/republish", {"expression": expression, "target": "slow"})
    assert response.status_code == 302
    assert store.get_app(app_key).settings.republish_rules == (RepublishRule(expression, "slow"),)
    html = panel.get(f"/apps/{app_key}").get_data(as_text=True)
    assert "engine_fps_id" in html
    response = panel.post(f"/apps/{app_key}/republish/remove", {"index": "1", "expression": expression})
    assert response.status_code == 302
    assert store.get_app(app_key).settings.republish_rules == ()
    actions = [e["action"] for e in audit_entries(store, admin_user)]
    assert "app.republish.add" in actions and "app.republish.remove" in actions


def test_an_aggregated_view_is_accepted_as_a_republish_rule(panel, store, app_key):
    expression = "select device.model, avg(data.fps) as fps from `engine_fps_id` group by device.model"
    response = panel.post(f"/apps/{app_key}/republish", {"expression": expression, "target": "fps_summary"})
    assert response.status_code == 302
    assert store.get_app(app_key).settings.republish_rules == (RepublishRule(expression, "fps_summary"),)
    refused = panel.post(
        f"/apps/{app_key}/republish",
        {"expression": "select count(*) from `engine_fps_id` where count(*) > 1", "target": "x"},
    )
    assert refused.status_code != 302  # an aggregate inside WHERE is invalid_filter, here as anywhere
    assert len(store.get_app(app_key).settings.republish_rules) == 1


def test_a_rule_removal_against_a_changed_list_removes_nothing(panel, store, app_key):
    panel.post(f"/apps/{app_key}/republish", {"expression": "select * from `a`", "target": "x"})
    response = panel.post(
        f"/apps/{app_key}/republish/remove", {"index": "1", "expression": "select * from `b`"}
    )
    assert response.status_code == 302
    assert len(store.get_app(app_key).settings.republish_rules) == 1


def test_an_invalid_republish_rule_is_refused(panel, store, app_key):
    response = panel.post(f"/apps/{app_key}/republish", {"expression": "select from where", "target": "x"})
    assert response.status_code == 400
    assert "Invalid StreamSQL" in response.get_data(as_text=True)
    response = panel.post(f"/apps/{app_key}/republish", {"expression": "select * from `a`", "target": ""})
    assert response.status_code == 400
    assert store.get_app(app_key).settings.republish_rules == ()


def test_deleting_needs_the_key_typed(panel, store, app_key, admin_user):
    page = panel.get(f"/apps/{app_key}/delete")
    assert page.status_code == 200
    assert "Type the app key" in page.get_data(as_text=True)
    response = panel.post(f"/apps/{app_key}/delete", {"confirm": "something else"})
    assert response.status_code == 400
    assert store.get_app(app_key) is not None
    response = panel.post(f"/apps/{app_key}/delete", {"confirm": app_key})
    assert response.status_code == 302
    assert store.get_app(app_key) is None
    assert any(e["action"] == "app.delete" and e["app"] == app_key for e in audit_entries(store, admin_user))


def test_names_and_patterns_are_escaped(panel, store, app_key):
    """App keys and role names are restricted to a safe alphabet; everything else an admin or a client
    can type (channel patterns, rule targets and expressions) is escaped wherever it is shown."""
    hostile = "<script>alert(1)</script>"
    store.update_app(
        app_key,
        lambda app: App(
            app.key,
            {**app.roles, "odd": Role("odd", "o" * 32, channels=(hostile,))},
            type(app.settings)(
                republish_rules=(RepublishRule("select * from `x`", '"><img src=x onerror=alert(1)>'),)
            ),
        ),
    )
    html = panel.get(f"/apps/{app_key}").get_data(as_text=True)
    assert hostile not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    edit = panel.get(f"/apps/{app_key}/roles/odd/edit").get_data(as_text=True)
    assert hostile not in edit
    response = panel.post("/apps/", {"key": hostile})
    assert hostile not in response.get_data(as_text=True)
