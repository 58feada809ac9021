"""Admin users: list, add, reset another user's password, delete, change one's own password.

Changing a password draws a new session epoch (see :mod:`admin.users`), so it logs that user out
everywhere; one's own session is renewed on the spot.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user

from .auth import start_session
from .context import audit, store
from .forms import ConfirmForm, PasswordForm, ResetPasswordForm, UserCreateForm
from .users import check_credentials, load_user, set_password

bp = Blueprint("accounts", __name__, url_prefix="/users")


def _render(status: int = 200, **forms: Any) -> Any:
    users = sorted(store().admin_users().values(), key=lambda u: u["name"])
    return render_template(
        "accounts/index.html",
        users=users,
        create_form=forms.get("create_form") or UserCreateForm(formdata=None),
        password_form=forms.get("password_form") or PasswordForm(formdata=None),
        reset_form=ResetPasswordForm(formdata=None),
    ), status


@bp.route("/")
def index() -> Any:
    return _render()


@bp.route("/", methods=["POST"])
def create() -> Any:
    form = UserCreateForm()
    if not form.validate_on_submit():
        return _render(400, create_form=form)
    if store().admin_user(form.name.data):
        form.name.errors.append("That user exists; reset its password instead.")
        return _render(400, create_form=form)
    set_password(store(), form.name.data, form.password.data)
    audit("user.create", target=form.name.data)
    flash(f"Admin user {form.name.data} created.", "success")
    return redirect(url_for("accounts.index"))


@bp.get("/password")
@bp.get("/<name>/password")
def password_address(name: str = "") -> Any:
    """A password form's address reloaded after its refused page: the users page, rather than a 405."""
    return redirect(url_for("accounts.index"))


@bp.route("/password", methods=["POST"])
def change_own_password() -> Any:
    form = PasswordForm()
    if not form.validate_on_submit():
        return _render(400, password_form=form)
    if check_credentials(store(), current_user.name, form.current.data, record_login=False) is None:
        form.current.errors.append("That is not your current password.")
        return _render(400, password_form=form)
    set_password(store(), current_user.name, form.password.data)
    # The new epoch ended every session of ours, this one included: log in again with it.
    user = load_user(store(), f"{store().admin_user(current_user.name)['session_epoch']}:{current_user.name}")
    store().close_admin_session(session.get("sid", ""))
    start_session(user, session.get("logged_in_at", time.time()))
    audit("user.password", target=user.name)
    flash("Password changed; your other sessions are logged out.", "success")
    return redirect(url_for("accounts.index"))


@bp.route("/<name>/password", methods=["POST"])
def reset_password(name: str) -> Any:
    if store().admin_user(name) is None:
        abort(404)
    if name == current_user.name:
        return redirect(url_for("accounts.index"))  # one's own password needs the current one
    form = ResetPasswordForm()
    if not form.validate_on_submit():
        flash("Password not reset: " + "; ".join(form.password.errors or ["invalid request"]), "error")
        return _render(400)
    set_password(store(), name, form.password.data)
    audit("user.password.reset", target=name)
    flash(f"Password of {name} reset; their sessions are logged out.", "success")
    return redirect(url_for("accounts.index"))


@bp.route("/<name>/delete", methods=["GET", "POST"])
def delete(name: str) -> Any:
    user = store().admin_user(name)
    if user is None:
        abort(404)
    form = ConfirmForm()
    if name == current_user.name:
        flash("You cannot delete yourself; ask another admin.", "error")
        return redirect(url_for("accounts.index"))
    if request.method == "POST" and form.validate_on_submit():
        if form.confirm.data != name:
            form.confirm.errors.append("That is not the user name.")
        else:
            store().delete_admin_user(name)
            audit("user.delete", target=name)
            flash(f"Admin user {name} deleted.", "success")
            return redirect(url_for("accounts.index"))
    status = 400 if request.method == "POST" else 200
    return render_template("accounts/delete.html", user=user, form=form), status
