"""Roles of an app: add, edit permissions and channel patterns, reveal the secret, rotate it, revoke.

Secrets never appear in a page's HTML: the reveal and copy buttons fetch one (a CSRF-checked POST, so it is
audited and never cached or kept in a URL). A rotation keeps the previous secret valid for a grace period
(``Role.rotated``), which every broker honours; revoking a role makes the brokers close its sessions.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for

from app.config_store import ConfigError
from app.models import App, Role, generate_secret

from .apps import get_app_or_404, render_detail
from .context import audit, now, store
from .forms import ConfirmForm, EmptyForm, RoleEditForm, RoleForm, RotateForm, split_patterns

bp = Blueprint("roles", __name__, url_prefix="/apps/<key>/roles")


def _get_role_or_404(app: App, name: str) -> Role:
    role = app.roles.get(name)
    if role is None:
        abort(404)
    return role


def _anchor(key: str, name: str = "") -> str:
    return url_for("apps.detail", key=key) + (f"#role-{name}" if name else "#roles")


@bp.route("/", methods=["POST"])
def create(key: str) -> Any:
    app = get_app_or_404(key)
    form = RoleForm()
    if not form.validate_on_submit():
        return render_detail(app, 400, role_form=form)
    name = form.name.data
    role = Role(
        name=name,
        secret=generate_secret(),
        permissions=tuple(form.permissions.data or ()),
        channels=split_patterns(form.channels.data),
    )
    exists = False

    def change(current: App) -> App:
        nonlocal exists
        exists = name in current.roles
        return current if exists else replace(current, roles={**current.roles, name: role})

    store().update_app(key, change)
    if exists:
        form.name.errors.append(f"App {key} already has a role {name}.")
        return render_detail(get_app_or_404(key), 400, role_form=form)
    audit(
        "role.create",
        app=key,
        target=name,
        permissions=",".join(role.permissions) or "none",
        channels=",".join(role.channels),
    )
    flash(f"Role {name} created with a fresh secret (reveal or copy it below).", "success")
    return redirect(_anchor(key, name))


# The address of a role form in the address bar (typed, or reloaded after a refused form's page): the app
# page at the roles or that role, rather than a 405.
@bp.get("/")
def roles_address(key: str) -> Any:
    get_app_or_404(key)
    return redirect(_anchor(key))


@bp.get("/<name>/rotate")
@bp.get("/<name>/secret")
def role_address(key: str, name: str) -> Any:
    _get_role_or_404(get_app_or_404(key), name)
    return redirect(_anchor(key, name))


@bp.route("/<name>/edit", methods=["GET", "POST"])
def edit(key: str, name: str) -> Any:
    app = get_app_or_404(key)
    role = _get_role_or_404(app, name)
    if request.method == "GET":
        form = RoleEditForm(
            formdata=None, data={"permissions": list(role.permissions), "channels": "\n".join(role.channels)}
        )
        return render_template("roles/edit.html", app=app, role=role, form=form)
    form = RoleEditForm()
    if not form.validate_on_submit():
        return render_template("roles/edit.html", app=app, role=role, form=form), 400
    permissions = tuple(form.permissions.data or ())
    channels = split_patterns(form.channels.data)

    def change(current: App) -> App:
        existing = _get_role_or_404(current, name)
        updated = replace(existing, permissions=permissions, channels=channels)
        return replace(current, roles={**current.roles, name: updated})

    store().update_app(key, change)
    audit(
        "role.update",
        app=key,
        target=name,
        permissions=",".join(permissions) or "none",
        channels=",".join(channels),
    )
    flash(f"Role {name} updated; live sessions get the new permissions within a second.", "success")
    return redirect(_anchor(key, name))


@bp.route("/<name>/rotate", methods=["POST"])
def rotate(key: str, name: str) -> Any:
    app = get_app_or_404(key)
    _get_role_or_404(app, name)
    form = RotateForm()
    if not form.validate_on_submit():
        # One message (the field gives at most one; a CSRF failure none), and the row keeps what was typed.
        error = (form.grace_seconds.errors or ["the form expired; try again"])[0]
        flash(f"Secret of {name} not rotated: {error}", "error")
        return render_detail(app, 400, rotation=(name, form))
    grace = int(form.grace_seconds.data)
    rotated_at = now()

    def change(current: App) -> App:
        existing = _get_role_or_404(current, name)
        updated = existing.rotated(generate_secret(), grace, rotated_at)
        return replace(current, roles={**current.roles, name: updated})

    store().update_app(key, change)
    audit("role.rotate", app=key, target=name, grace_seconds=grace)
    if grace:
        flash(f"Secret of {name} rotated; the previous one keeps working for {grace} s.", "success")
    else:
        flash(f"Secret of {name} rotated; the previous one no longer works.", "success")
    return redirect(_anchor(key, name))


@bp.route("/<name>/secret", methods=["POST"])
def reveal(key: str, name: str) -> Any:
    """The role's secret as JSON, for the reveal and copy buttons (audited, never cached)."""
    app = get_app_or_404(key)
    role = _get_role_or_404(app, name)
    if not EmptyForm().validate_on_submit():
        abort(400)
    audit("role.secret.reveal", app=key, target=name)
    previous = role.previous_secret if len(role.secrets_valid_at(now())) > 1 else None
    return jsonify(
        secret=role.secret, previous_secret=previous, previous_expires_at=role.previous_secret_expires_at
    )


@bp.route("/<name>/revoke", methods=["GET", "POST"])
def revoke(key: str, name: str) -> Any:
    app = get_app_or_404(key)
    role = _get_role_or_404(app, name)
    form = ConfirmForm()
    if request.method == "POST" and form.validate_on_submit():
        if form.confirm.data != name:
            form.confirm.errors.append("That is not the role name.")
        else:

            def change(current: App) -> App:
                return replace(current, roles={k: v for k, v in current.roles.items() if k != name})

            try:
                store().update_app(key, change)
            except ConfigError:
                abort(404)
            audit("role.revoke", app=key, target=name)
            flash(f"Role {name} revoked; brokers close its sessions within a second.", "success")
            return redirect(_anchor(key))
    status = 400 if request.method == "POST" else 200
    return render_template("roles/revoke.html", app=app, role=role, form=form), status
