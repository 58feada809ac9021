"""Every form that changes something carries a CSRF token, and a request without a valid one is refused
before it reaches the view."""

from __future__ import annotations

from .test_auth import all_routes


def post_routes(app):
    return [(method, url) for method, url in all_routes(app) if method == "POST"]


def test_every_post_without_a_token_is_refused(panel, panel_app, app_key):
    routes = post_routes(panel_app)
    assert len(routes) >= 18
    for _, url in routes:
        url = url.replace("some-app", app_key).replace("some-role", "pubsub")
        response = panel.post(url, {"confirm": app_key}, csrf=False)
        assert response.status_code == 400, f"POST {url}: {response.status_code}"
        assert "Form expired" in response.get_data(as_text=True) or url.endswith("/secret")


def test_a_token_of_another_session_is_refused(panel, make_client, app_key, store):
    stranger = make_client()
    foreign_token = stranger.csrf_token()
    response = panel.post(f"/apps/{app_key}/delete", {"confirm": app_key, "csrf_token": foreign_token})
    assert response.status_code == 400
    assert store.get_app(app_key) is not None


def test_the_login_form_is_protected_too(client, admin_user):
    response = client.post("/login", {"username": admin_user, "password": "x"}, csrf=False)
    assert response.status_code == 400


def test_the_secret_reveal_needs_the_token_header(panel, app_key):
    url = f"/admin/apps/{app_key}/roles/pubsub/secret"
    assert panel.client.post(url).status_code == 400
    response = panel.client.post(
        url, headers={"X-CSRFToken": panel.csrf_token(), "Accept": "application/json"}
    )
    assert response.status_code == 200
    assert response.get_json()["secret"] == "s" * 32


def test_pages_put_the_token_in_every_form(panel, app_key):
    html = panel.get(f"/apps/{app_key}").get_data(as_text=True)
    forms = html.count("<form")
    assert forms >= 5
    assert html.count('name="csrf_token"') >= forms
