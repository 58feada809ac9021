"""Apps: the list (with live connection counts), creation, deletion, per-app settings, republish rules.

Every change is one config-store write; running brokers pick it up within a second (deleting an app
closes its connections there, in every process).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from app.cluster import registered_connections
from app.config_store import ConfigError
from app.models import (
    DEFAULT_MIN_REPLICAS,
    DEFAULT_REPLICATION_TIMEOUT,
    App,
    AppSettings,
    RepublishRule,
    generate_appkey,
)

from .context import audit, now, panel, store
from .forms import (
    AppCreateForm,
    AppSettingsForm,
    ConfirmForm,
    EmptyForm,
    MetricsLabelForm,
    RemoveRuleForm,
    RepublishRuleForm,
    RoleForm,
    RotateForm,
)

bp = Blueprint("apps", __name__, url_prefix="/apps")


def get_app_or_404(key: str) -> App:
    app = store().get_app(key)
    if app is None:
        abort(404)
    return app


def connection_counts() -> Counter[str]:
    return Counter(info.get("app") for info in registered_connections(store().redis))


def broker_defaults() -> dict[str, Any]:
    """What an app gets for each setting left blank (shown as placeholders)."""
    settings = panel().settings
    return {
        "history_max_length": settings.history_max_length,
        "history_max_age": settings.history_max_age,
        "max_connections": "unlimited",
        "max_connections_per_ip": settings.max_connections_per_ip or "unlimited",
        "max_subscriptions": settings.max_subscriptions or "unlimited",
        "publish_rate": settings.publish_rate or "unlimited",
        "max_message_size": f"broker limit {settings.max_message_size}",
        "send_queue_max_bytes": settings.send_queue_max_bytes,
        "history_max_bytes": settings.history_max_bytes or "no byte limit",
        "app_history_max_bytes": settings.app_history_max_bytes or "unlimited",
        "max_publish_channels": settings.max_publish_channels or "unlimited",
        "max_channel_length": settings.max_channel_length or "unlimited",
        "min_replicas": DEFAULT_MIN_REPLICAS,
        "replication_timeout": DEFAULT_REPLICATION_TIMEOUT,
    }


def list_cells(settings: AppSettings) -> dict[str, str]:
    """The History and Limits cells of the app list: the parts that are set, joined by " · " (so no
    separator dangles when the first part is unset), or the word for "broker defaults"."""
    history = []
    if settings.history_max_length is not None:
        history.append(f"{settings.history_max_length} msg")
    if settings.history_max_age is not None:
        history.append(f"{settings.history_max_age} s")
    limits = []
    if settings.max_connections:
        limits.append(f"{settings.max_connections} conn")
    if settings.publish_rate:
        limits.append(f"{settings.publish_rate:g}/s")
    return {"history": " · ".join(history) or "default", "limits": " · ".join(limits) or "defaults"}


def render_index(form: AppCreateForm, status: int = 200) -> Any:
    apps = sorted(store().list_apps().values(), key=lambda a: a.key)
    cells = {app.key: list_cells(app.settings) for app in apps}
    page = render_template("apps/index.html", apps=apps, cells=cells, counts=connection_counts(), form=form)
    return page, status


@bp.route("/")
def index() -> Any:
    return render_index(AppCreateForm(formdata=None))


@bp.route("/", methods=["POST"])
def create() -> Any:
    form = AppCreateForm()
    if form.validate_on_submit():
        key = form.key.data or generate_appkey()
        if key in (".", ".."):
            form.key.errors.append("That name cannot be used in a URL.")
        else:
            try:
                store().add_app(App(key=key))
            except ConfigError as exc:
                form.key.errors.append(str(exc))
            else:
                audit("app.create", app=key)
                flash(f"App {key} created. Add a role to let clients connect.", "success")
                return redirect(url_for("apps.detail", key=key))
    return render_index(form, 400)


def render_detail(
    app: App, status: int = 200, rotation: tuple[str, RotateForm] | None = None, **forms: Any
) -> Any:
    """The app page; ``forms`` replaces the blank form of the one that was just submitted with errors, and
    ``rotation`` (role name, its refused rotate form) that role's rotate field, so it shows what was typed."""
    settings_form = forms.pop("settings_form", None) or AppSettingsForm(
        formdata=None, data={**app.settings.to_dict(), "durability": app.durability}
    )
    page_forms = {
        "settings_form": settings_form,
        "rule_form": forms.pop("rule_form", None) or RepublishRuleForm(formdata=None),
        "role_form": forms.pop("role_form", None)
        or RoleForm(
            formdata=None, data={"channels": "*", "permissions": ["publish", "subscribe", "unsubscribe"]}
        ),
        "rotate_form": RotateForm(formdata=None),
        "metrics_form": forms.pop("metrics_form", None)
        or MetricsLabelForm(formdata=None, data={"metrics_label": app.metrics_label}),
        "remove_rule_form": RemoveRuleForm(formdata=None),
        "button_form": EmptyForm(formdata=None),
    }
    connections = registered_connections(store().redis, app.key)
    return (
        render_template(
            "apps/detail.html",
            app=app,
            roles=sorted(app.roles.values(), key=lambda r: r.name),
            connections=connections,
            role_connections=Counter(c.get("role") for c in connections),
            defaults=broker_defaults(),
            now=now(),
            rotation=rotation,
            **page_forms,
        ),
        status,
    )


@bp.route("/<key>")
def detail(key: str) -> Any:
    return render_detail(get_app_or_404(key))


@bp.route("/<key>/settings", methods=["POST"])
def save_settings(key: str) -> Any:
    app = get_app_or_404(key)
    form = AppSettingsForm()
    if not form.validate_on_submit():
        return render_detail(app, 400, settings_form=form)
    values = form.values()
    durability = form.durability.data or "leader"

    def change(current: App) -> App:
        kept = current.settings.republish_rules  # edited by its own forms; never lost to a race here
        return replace(current, settings=AppSettings(**values, republish_rules=kept), durability=durability)

    try:
        store().update_app(key, change)
    except ConfigError:
        abort(404)
    changed = {k: ("default" if v is None else v) for k, v in values.items()}
    audit("app.settings", app=key, durability=durability, **changed)
    flash("Settings saved; brokers apply them within a second.", "success")
    return redirect(url_for("apps.detail", key=key) + "#settings")


@bp.route("/<key>/metrics-label", methods=["POST"])
def save_metrics_label(key: str) -> Any:
    """What /metrics calls this app: scrapers need not learn the tenants' app keys."""
    app = get_app_or_404(key)
    form = MetricsLabelForm()
    if not form.validate_on_submit():
        return render_detail(app, 400, metrics_form=form)
    label = form.metrics_label.data or ""
    try:
        store().update_app(key, lambda current: replace(current, metrics_label=label))
    except ConfigError:
        abort(404)
    audit("app.metrics_label", app=key, label=label or "(the app key)")
    flash("Metrics label saved.", "success")
    return redirect(url_for("apps.detail", key=key) + "#metrics")


@bp.route("/<key>/republish", methods=["POST"])
def add_rule(key: str) -> Any:
    app = get_app_or_404(key)
    form = RepublishRuleForm()
    if not form.validate_on_submit():
        return render_detail(app, 400, rule_form=form)
    rule = RepublishRule(expression=form.expression.data.strip(), target=form.target.data.strip())

    def change(current: App) -> App:
        rules = (*current.settings.republish_rules, rule)
        return replace(current, settings=replace(current.settings, republish_rules=rules))

    store().update_app(key, change)
    audit("app.republish.add", app=key, target=rule.target, expression=rule.expression)
    flash("Republish rule added.", "success")
    return redirect(url_for("apps.detail", key=key) + "#republish")


@bp.route("/<key>/republish/remove", methods=["POST"])
def remove_rule(key: str) -> Any:
    get_app_or_404(key)
    form = RemoveRuleForm()
    if not form.validate_on_submit():
        abort(400)
    index, expression = form.index.data - 1, form.expression.data
    removed: list[RepublishRule] = []

    def change(current: App) -> App:
        rules = list(current.settings.republish_rules)
        removed.clear()
        # The index is checked against the expression the page showed: if the list changed meanwhile,
        # nothing is removed rather than the wrong rule.
        if 0 <= index < len(rules) and rules[index].expression == expression:
            removed.append(rules.pop(index))
        return replace(current, settings=replace(current.settings, republish_rules=tuple(rules)))

    store().update_app(key, change)
    if removed:
        audit("app.republish.remove", app=key, target=removed[0].target, expression=removed[0].expression)
        flash("Republish rule removed.", "success")
    else:
        flash("The rules changed meanwhile; nothing was removed. Check the list and try again.", "error")
    return redirect(url_for("apps.detail", key=key) + "#republish")


# A form's address in the address bar (typed, or reloaded after the page of a refused form, which is shown
# at it): the part of the app page holding that form, rather than a 405.
@bp.get("/<key>/settings")
def settings_address(key: str) -> Any:
    return _to_section(key, "settings")


@bp.get("/<key>/metrics-label")
def metrics_label_address(key: str) -> Any:
    return _to_section(key, "metrics")


@bp.get("/<key>/republish")
@bp.get("/<key>/republish/remove")
def republish_address(key: str) -> Any:
    return _to_section(key, "republish")


def _to_section(key: str, section: str) -> Any:
    get_app_or_404(key)
    return redirect(url_for("apps.detail", key=key) + f"#{section}")


@bp.route("/<key>/delete", methods=["GET", "POST"])
def delete(key: str) -> Any:
    app = get_app_or_404(key)
    form = ConfirmForm()
    count = connection_counts()[key]
    if request.method == "POST" and form.validate_on_submit():
        if form.confirm.data != key:
            form.confirm.errors.append("That is not the app key.")
        else:
            store().delete_app(key)
            audit("app.delete", app=key, roles=len(app.roles), connections=count)
            flash(f"App {key} deleted; brokers close its {count} connection(s).", "success")
            return redirect(url_for("apps.index"))
    status = 400 if request.method == "POST" else 200
    return render_template("apps/delete.html", app=app, form=form, connections=count), status
