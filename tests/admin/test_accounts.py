"""Admin users in the panel: add, reset another's password, delete, change one's own password."""

from __future__ import annotations

from admin.users import check_credentials

from .conftest import PASSWORD, audit_entries, unique


def test_the_user_list(panel, admin_user):
    html = panel.get("/users/").get_data(as_text=True)
    assert admin_user in html and ">you<" in html
    assert "password_hash" not in html and "scrypt" not in html.split("<table")[1]


def test_adding_a_user(panel, store, admin_user, make_client):
    name = unique("new")
    try:
        response = panel.post(
            "/users/", {"name": name, "password": "fresh password 1", "confirm": "fresh password 1"}
        )
        assert response.status_code == 302
        assert make_client().login(name, "fresh password 1").status_code == 302
        record = store.admin_user(name)
        assert record["password_hash"].startswith(("scrypt:", "pbkdf2:"))
        assert "fresh password 1" not in str(record)
        assert any(
            e["action"] == "user.create" and e["target"] == name for e in audit_entries(store, admin_user)
        )
    finally:
        store.delete_admin_user(name)


def test_user_form_errors(panel, admin_user, store):
    cases = [
        (
            {"name": "bad name", "password": "long enough pw", "confirm": "long enough pw"},
            "user name must be",
        ),
        ({"name": "short", "password": "short", "confirm": "short"}, "Field must be between 10 and 1024"),
        ({"name": "differ", "password": "long enough pw", "confirm": "other pw here"}, "Passwords differ."),
        ({"name": admin_user, "password": "long enough pw", "confirm": "long enough pw"}, "That user exists"),
    ]
    for data, message in cases:
        response = panel.post("/users/", data)
        assert response.status_code == 400, data
        assert message in response.get_data(as_text=True), data
    assert store.admin_user("short") is None


def test_resetting_another_users_password_logs_them_out(panel, store, make_client):
    name = unique("other")
    other = make_client()
    try:
        panel.post("/users/", {"name": name, "password": PASSWORD, "confirm": PASSWORD})
        other.login(name)
        assert other.get("/apps/").status_code == 200
        assert panel.post(f"/users/{name}/password", {"password": "brand new password"}).status_code == 302
        assert other.get("/apps/").status_code == 302
        assert check_credentials(store, name, "brand new password") is not None
        assert panel.post(f"/users/{name}/password", {"password": "short"}).status_code == 400
    finally:
        store.delete_admin_user(name)


def test_changing_ones_own_password_needs_the_current_one(panel, store, admin_user):
    wrong = panel.post(
        "/users/password",
        {"current": "not it", "password": "new password 123", "confirm": "new password 123"},
    )
    assert wrong.status_code == 400
    assert "That is not your current password." in wrong.get_data(as_text=True)
    right = panel.post(
        "/users/password",
        {"current": PASSWORD, "password": "new password 123", "confirm": "new password 123"},
    )
    assert right.status_code == 302
    assert panel.get("/apps/").status_code == 200  # this session was renewed
    assert check_credentials(store, admin_user, "new password 123") is not None
    assert check_credentials(store, admin_user, PASSWORD) is None


def test_deleting_a_user_needs_the_name_typed_and_not_oneself(panel, store, admin_user):
    name = unique("gone")
    panel.post("/users/", {"name": name, "password": PASSWORD, "confirm": PASSWORD})
    assert panel.post(f"/users/{name}/delete", {"confirm": "nope"}).status_code == 400
    assert store.admin_user(name) is not None
    assert panel.post(f"/users/{name}/delete", {"confirm": name}).status_code == 302
    assert store.admin_user(name) is None
    assert panel.post(f"/users/{admin_user}/delete", {"confirm": admin_user}).status_code == 302
    assert store.admin_user(admin_user) is not None
    assert panel.get("/users/nobody-here/delete").status_code == 404
