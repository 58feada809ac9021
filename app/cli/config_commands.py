"""``init``, ``import-config``, ``export-config``, ``settings``: the config store from a shell."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..config_store import ConfigError, dump_apps_yaml, read_apps_yaml
from ..models import MAX_SECRET_LENGTH, MIN_SECRET_LENGTH, WELL_KNOWN_APPS
from ..settings import settings_table
from .audit import record, record_import
from .errors import fail
from .progress import progress
from .shard_commands import import_shard_list, unreachable_shards
from .store_access import add_store_arguments, open_store


def register(commands: Any) -> None:
    init = commands.add_parser("init", help="create the well-known apps (_health, _pubsub, _stats, _admin)")
    init.add_argument("--force", action="store_true", help="give existing well-known apps fresh secrets")
    init.add_argument(
        "--admin",
        action="store_true",
        help="also create the admin panel's first user when there is none, and print its password once (the "
        "first-admin step of a gunicorn deployment; `python -m app run` does it by itself)",
    )
    add_store_arguments(init)
    init.set_defaults(handler=init_command)

    imp = commands.add_parser(
        "import-config",
        help="load a Cobra apps.yaml into the config store",
        description="Load a Cobra apps.yaml: apps in the file replace apps of the same key, other apps stay. "
        "The whole file is checked first; duplicate app keys or role names, invalid republish rules and "
        f"secrets shorter than {MIN_SECRET_LENGTH} or longer than {MAX_SECRET_LENGTH} characters are "
        "refused. An optional top-level 'shards' list ([{name, url}], any shard kind) replaces the shard "
        "list; every shard in it must answer PING first.",
    )
    imp.add_argument("file", type=Path)
    imp.add_argument("--check", action="store_true", help="only check the file and say what would change")
    imp.add_argument(
        "--allow-legacy-secrets",
        action="store_true",
        help=f"accept secrets shorter than {MIN_SECRET_LENGTH} or longer than {MAX_SECRET_LENGTH} characters "
        "(each one is warned of)",
    )
    add_store_arguments(imp)
    imp.set_defaults(handler=import_command)

    exp = commands.add_parser("export-config", help="print the config store as a Cobra apps.yaml")
    add_store_arguments(exp)
    exp.set_defaults(handler=export_command)

    table = commands.add_parser("settings", help="print every setting with its flag, variable and default")
    table.set_defaults(handler=lambda args: print(settings_table()))


def init_command(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        if args.force:
            for key in WELL_KNOWN_APPS:
                store.delete_app(key)
        created = store.ensure_well_known_apps()
        if created:
            record(store, "config.init", apps=",".join(sorted(created)), fresh_secrets=args.force)
        apps = store.list_apps()
        print(dump_apps_yaml(apps[key] for key in WELL_KNOWN_APPS if key in apps), end="")
        if args.admin:
            _init_first_admin(store)
    return 0


def _init_first_admin(store: Any) -> None:
    from admin.users import ensure_first_admin

    first_admin = ensure_first_admin(store)
    if first_admin is None:
        names = ", ".join(sorted(store.admin_users()))
        print(f"admin users exist already ({names}): none created", file=sys.stderr)
        return
    name, password = first_admin
    record(store, "user.create", target=name, first_admin=True)
    print(f"first admin user: {name} / {password}   (shown once; change it in the panel)", file=sys.stderr)


def import_command(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return fail(f"cannot read {args.file}: {exc}")
    # a big apps.yaml takes seconds to parse: say what is going on, step by step
    try:
        with progress(f"parsing {args.file} ({len(text) / 1e6:.1f} MB)"):
            parsed = read_apps_yaml(text, allow_legacy_secrets=args.allow_legacy_secrets)
    except ConfigError as exc:
        return fail(f"{args.file}: {exc}")
    for warning in parsed.warnings:
        print(f"warning: {args.file}: {warning}", file=sys.stderr)
    apps = parsed.apps
    if parsed.shards is not None:  # nothing is written unless every shard of the file answers
        problem = unreachable_shards(parsed.shards)
        if problem is not None:
            return fail(f"{args.file}: {problem}")
    with open_store(args) as store:
        existing = store.list_apps()
        if not args.check:
            with progress(f"writing {len(apps)} app(s) to the config store"):
                store.put_apps(apps)
            record_import(store, apps, existing)
        if parsed.shards is not None and (code := import_shard_list(args, store, parsed.shards)):
            return code
    keys = [app.key for app in apps]
    new = sum(1 for key in keys if key not in existing)
    print(f"{len(keys) - new} of them replace apps of the same key", file=sys.stderr)
    shown = ", ".join(keys[:20]) + (f" and {len(keys) - 20} more" if len(keys) > 20 else "")
    if args.check:
        print(f"the file is valid (nothing written): it would import {len(keys)} app(s): {shown}")
    else:
        print(f"imported {len(keys)} app(s): {shown}")
    return 0


def export_command(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        print(store.export_yaml(), end="")
    return 0
