"""A refused form's page is shown at the form's address; reloading that address from the address bar (a
GET) must give a page of the panel — the form's own page — never Werkzeug's bare "405 Method Not
Allowed"."""

from __future__ import annotations

import pytest

from .conftest import unique


@pytest.fixture
def refused(panel, app_key):
    """``refused(path, data)``: posts a form the panel refuses and returns the address it was shown at."""

    def post(path: str, data: dict) -> str:
        response = panel.post(path, data)
        assert response.status_code == 400, response.get_data(as_text=True)
        return path

    return post


def reloaded(panel, path: str) -> str:
    """The address a GET of ``path`` leads to, checking that it is a page of the panel."""
    response = panel.get(path)
    assert response.status_code == 302, (path, response.status_code)
    target = response.headers["Location"]
    page, _, _ = target.removeprefix("/admin").partition("#")
    assert panel.get(page).status_code == 200
    return target


def test_reloading_a_refused_role_form_shows_the_roles(panel, app_key, refused):
    path = refused(f"/apps/{app_key}/roles/", {"name": "bad name!"})
    assert reloaded(panel, path) == f"/admin/apps/{app_key}#roles"


def test_reloading_a_refused_settings_form_shows_the_settings(panel, app_key, refused):
    path = refused(f"/apps/{app_key}/settings", {"history_max_length": "many"})
    assert reloaded(panel, path) == f"/admin/apps/{app_key}#settings"


def test_reloading_a_refused_republish_rule_shows_the_rules(panel, app_key, refused):
    path = refused(f"/apps/{app_key}/republish", {"expression": "", "target": "x"})
    assert reloaded(panel, path) == f"/admin/apps/{app_key}#republish"
    assert reloaded(panel, f"/apps/{app_key}/republish/remove") == f"/admin/apps/{app_key}#republish"


def test_reloading_a_refused_rotation_shows_the_role(panel, app_key, refused):
    path = refused(f"/apps/{app_key}/roles/pubsub/rotate", {"grace_seconds": "soon"})
    assert reloaded(panel, path) == f"/admin/apps/{app_key}#role-pubsub"
    assert reloaded(panel, f"/apps/{app_key}/roles/pubsub/secret") == f"/admin/apps/{app_key}#role-pubsub"


def test_reloading_a_refused_import_or_password_form_shows_its_page(panel):
    assert panel.post("/config/import", {}).status_code == 400
    assert reloaded(panel, "/config/import") == "/admin/config/"
    assert panel.post("/users/password", {"current": "x"}).status_code == 400
    assert reloaded(panel, "/users/password") == "/admin/users/"
    assert reloaded(panel, "/users/someone/password") == "/admin/users/"


def test_form_addresses_of_unknown_apps_and_roles_are_404s(panel, app_key):
    assert panel.get(f"/apps/{unique('gone')}/settings").status_code == 404
    assert panel.get(f"/apps/{app_key}/roles/nope/rotate").status_code == 404


def test_a_button_address_typed_in_is_a_styled_405(panel):
    for path in ("/logout", "/config/export", "/connections/abc/close"):
        response = panel.get(path)
        assert response.status_code == 405, path
        page = response.get_data(as_text=True)
        assert "/admin/static/admin.css" in page and "Method Not Allowed" not in page, path
        assert "POST" in response.headers["Allow"]
