"""The audit log: every admin change (who, when, from where, what — never a secret), newest first,
filterable by user, action and app. Entries are written by :func:`admin.context.audit`."""

from __future__ import annotations

import re
from typing import Any

import redis
from flask import Blueprint, render_template, request, url_for

from .context import store
from .forms import AuditFilterForm

bp = Blueprint("audit", __name__, url_prefix="/audit")

# An entry id Redis takes (ASCII digits, each part below 2**64): str.isdigit() also took "²", and Redis's
# refusal of the id was reported as the config store being unreachable (a 503).
STREAM_ID = re.compile(r"[0-9]{1,19}(?:-[0-9]{1,19})?")
PAGE_SIZE = 50
SCAN_LIMIT = 2000  # entries read per page at most while filtering: a rare filter shows a short page


def _matches(entry: dict[str, str], user: str, action: str, app: str) -> bool:
    return (
        (not user or entry.get("user", "").lower() == user.lower())
        and (not action or entry.get("action", "").startswith(action))
        and (not app or entry.get("app", "") == app)
    )


@bp.route("/")
def index() -> Any:
    form = AuditFilterForm(formdata=request.args)
    form.validate()
    user = (form.user.data or "").strip() if not form.user.errors else ""
    action = (form.action.data or "").strip() if not form.action.errors else ""
    app = (form.app.data or "").strip() if not form.app.errors else ""
    before = request.args.get("before") or None
    if before and not STREAM_ID.fullmatch(before):
        before = None
    entries: list[tuple[str, dict[str, str]]] = []
    scanned, cursor, exhausted = 0, before, False
    while len(entries) < PAGE_SIZE and scanned < SCAN_LIMIT:
        try:
            batch = store().audit_entries(200, cursor)
        except redis.ResponseError:  # Redis answered, refusing the id ("0-0" has nothing before it)
            batch = []
        if not batch:
            exhausted = True
            break
        scanned += len(batch)
        for entry_id, entry in batch:
            cursor = entry_id
            if _matches(entry, user, action, app):
                entries.append((entry_id, entry))
                if len(entries) == PAGE_SIZE:
                    break
    older = None if exhausted and len(entries) < PAGE_SIZE else cursor
    filters = {k: v for k, v in (("user", user), ("action", action), ("app", app)) if v}

    def filter_url(**changes: str) -> str:
        return url_for("audit.index", **{k: v for k, v in {**filters, **changes}.items() if v})

    return render_template(
        "audit/index.html", form=form, entries=entries, older=older, filters=filters, filter_url=filter_url
    )
