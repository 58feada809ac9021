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

from .context import audit, run_blocking, store
from .forms import EmptyForm, ImportForm

bp = Blueprint("transfer", __name__, url_prefix="/config")
log = logging.getLogger(__name__)


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
                summary = {
                    "new": sorted(a.key for a in apps if a.key not in existing),
                    "replaced": sorted(a.key for a in apps if a.key in existing),
                    "roles": sum(len(a.roles) for a in apps),
                    "warnings": parsed.warnings,
                    "dry_run": bool(form.dry_run.data),
                }
                status = 200
                if not form.dry_run.data:
                    store().put_apps(apps)
                    audit(
                        "config.import",
                        new=",".join(summary["new"]) or "none",
                        replaced=",".join(summary["replaced"]) or "none",
                    )
                    # The summary on this page is the one message: no flash repeating it.
    return render_template(
        "transfer/index.html", form=form, export_form=EmptyForm(formdata=None), summary=summary
    ), status
