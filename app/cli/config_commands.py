"""``init``, ``import-config``, ``export-config``: the config store from a shell."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config_store import ConfigError, dump_apps_yaml, parse_apps_yaml
from ..models import WELL_KNOWN_APPS
from ..settings import settings_table
from .common import add_store_arguments, fail, open_store
from .ops_commands import progress


def register(commands: Any) -> None:
    init = commands.add_parser("init", help="create the well-known apps (_health, _pubsub, _stats, _admin)")
    init.add_argument("--force", action="store_true", help="give existing well-known apps fresh secrets")
    add_store_arguments(init)
    init.set_defaults(handler=init_command)

    imp = commands.add_parser("import-config", help="load a Cobra apps.yaml into the config store")
    imp.add_argument("file", type=Path)
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
        store.ensure_well_known_apps()
        apps = store.list_apps()
        print(dump_apps_yaml(apps[key] for key in WELL_KNOWN_APPS if key in apps), end="")
    return 0


def import_command(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text()
    except OSError as exc:
        return fail(f"cannot read {args.file}: {exc}")
    with open_store(args) as store:
        # a big apps.yaml takes seconds to parse: say what is going on, step by step
        try:
            with progress(f"parsing {args.file} ({len(text) / 1e6:.1f} MB)"):
                apps = parse_apps_yaml(text)
        except ConfigError as exc:
            return fail(f"{args.file}: {exc}")
        with progress(f"writing {len(apps)} app(s) to the config store"):
            store.put_apps(apps)
    keys = [app.key for app in apps]
    shown = ", ".join(keys[:20]) + (f" and {len(keys) - 20} more" if len(keys) > 20 else "")
    print(f"imported {len(keys)} app(s): {shown}")
    return 0


def export_command(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        print(store.export_yaml(), end="")
    return 0
