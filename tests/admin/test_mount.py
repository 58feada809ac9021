"""The panel as the broker serves it: under /admin/ of the broker's own port, links and static files
included, and when a front proxy already moved the prefix to SCRIPT_NAME."""

from __future__ import annotations

import urllib.error
import urllib.request

from admin.users import set_password

from .conftest import PASSWORD, unique


def fetch(url: str) -> tuple[int, str, dict]:
    request = urllib.request.Request(url)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_the_broker_serves_the_panel_under_admin(broker):
    status, _, headers = fetch(broker.http + "/admin/")
    assert status == 302 and headers["Location"].startswith("/admin/login")
    status, body, _ = fetch(broker.http + "/admin/login")
    assert status == 200
    assert 'href="/admin/static/admin.css' in body
    assert fetch(broker.http + "/admin/static/admin.css")[0] == 200
    assert fetch(broker.http + "/admin")[0] in (302, 308)
    assert fetch(broker.http + "/health/")[1] == "OK\n"  # the broker's own paths are untouched


def test_a_prefix_already_in_script_name_is_kept(panel_app, store):
    name = unique("proxy")
    set_password(store, name, PASSWORD)
    client = panel_app.test_client()
    page = client.get("/login", environ_overrides={"SCRIPT_NAME": "/admin"})
    assert page.status_code == 200
    assert 'href="/admin/static/admin.css' in page.get_data(as_text=True)
    store.delete_admin_user(name)
