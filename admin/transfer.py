"""Import and export of the Cobra ``apps.yaml`` (``apps: {KEY: {roles: {ROLE: {secret, permissions}}}}``).

Import validates the whole file first (``config_store.parse_apps_yaml``) and then writes it in one
transaction: apps in the file replace apps of the same key, other apps are left alone.

Parsing and checking run in gevent's thread pool (:func:`admin.context.run_blocking`): PyYAML's pure-Python
loader takes about 5 s for a 2 MB file, and on the event loop that would stall every WebSocket client of
this broker process for as long. In a thread the interpreter hands the GIL back to the loop every switch
interval (5 ms). The Redis write stays on the loop (redis-py's gevent sockets belong to the loop's hub).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, redirect, render_template, url_for

from app.config_store import ConfigError, dump_apps_yaml, read_apps_yaml
from app.models import Shard
from app.shards import off_the_event_loop, predicted_shard_move_fraction

from .context import audit, panel, run_blocking, store
from .forms import EmptyForm, ImportForm
from .shards import health_of, mask_url

bp = Blueprint("transfer", __name__, url_prefix="/config")
log = logging.getLogger(__name__)


def imported_shards(shards: tuple[Shard, ...] | None, form: ImportForm) -> dict[str, Any] | None:
    """What a file's ``shards`` list would change: names and the fraction of channels that move; None
    (with the form's errors saying why) when a shard does not answer PING, or when there is no list."""
    if shards is None:
        return None
    down = [
        f"shard {s.name} does not answer PING: {h['error']}"
        for s, h in zip(shards, health_of([s.url for s in shards]), strict=True)
        if not h["ok"]
    ]
    if down:
        form.form_errors.extend(down)
        return None
    fraction = off_the_event_loop(predicted_shard_move_fraction, store().shards(), shards, panel().redis_url)
    return {"names": [s.name for s in shards], "fraction": fraction}


def save_imported_shards(shards: tuple[Shard, ...], form: ImportForm) -> bool:
    current = store().shards()
    try:
        store().set_shards(shards, expected=current)
    except ConfigError as exc:
        form.form_errors.append(f"The apps were imported, the shard list was not: {exc}")
        return False
    listing = ", ".join(f"{s.name}={mask_url(s.url)}" for s in shards)
    audit("shards.import", shards=listing or "(config Redis)")
    return True


@bp.route("/")
def index() -> Any:
    return render_template(
        "transfer/index.html", form=ImportForm(formdata=None), export_form=EmptyForm(formdata=None)
    )


@bp.route("/export", methods=["POST"])
def export() -> Any:
    """A POST (not a link): the file holds every secret, so downloading it is CSRF-checked and audited."""
    if not EmptyForm().validate_on_submit():
        return redirect(url_for("transfer.index"))
    apps = store().list_apps()
    audit("config.export", apps=len(apps))
    return Response(
        dump_apps_yaml(apps.values()),
        mimetype="application/x-yaml",
        headers={"Content-Disposition": 'attachment; filename="apps.yaml"'},
    )


@bp.get("/import")
def import_address() -> Any:
    """An import's result (or its refusal) is shown at this address: reloading it there gives the page."""
    return redirect(url_for("transfer.index"))


@bp.route("/import", methods=["POST"])
def import_() -> Any:
    form = ImportForm()
    summary = None
    status = 400
    if form.validate_on_submit():
        text = ""
        if form.file.data:
            raw = form.file.data.read()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                form.file.errors.append("The file is not UTF-8 text.")
            if not raw:
                form.file.errors.append("The file is empty.")
        elif form.text.data:
            text = form.text.data
        else:
            form.form_errors.append("Choose a file or paste its content.")
        if text:
            try:
                parsed = run_blocking(read_apps_yaml, text)
            except ConfigError as exc:
                # YAML's messages span lines (where, the line, a caret under the column): kept as they are.
                form.form_errors.append(f"Not a valid apps.yaml: {exc}")
            else:
                apps = parsed.apps
                for warning in parsed.warnings:
                    log.warning("apps.yaml import: %s", warning)
                existing = store().app_keys()
                shard_change = imported_shards(parsed.shards, form)
                summary = {
                    "new": sorted(a.key for a in apps if a.key not in existing),
                    "replaced": sorted(a.key for a in apps if a.key in existing),
                    "roles": sum(len(a.roles) for a in apps),
                    "warnings": parsed.warnings,
                    "dry_run": bool(form.dry_run.data),
                    "shards": shard_change,
                }
                status = 200
                if parsed.shards is not None and shard_change is None:
                    summary, status = None, 400  # a shard does not answer: nothing is written
                elif not form.dry_run.data:
                    store().put_apps(apps)
                    audit(
                        "config.import",
                        new=",".join(summary["new"]) or "none",
                        replaced=",".join(summary["replaced"]) or "none",
                    )
                    if parsed.shards is not None and not save_imported_shards(parsed.shards, form):
                        summary, status = None, 400
                    # The summary on this page is the one message: no flash repeating it.
    return render_template(
        "transfer/index.html", form=form, export_form=EmptyForm(formdata=None), summary=summary
    ), status
