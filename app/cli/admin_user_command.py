"""``python -m app admin-user NAME [--password PW]``: create an admin-panel user or reset its password."""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from .audit import record
from .errors import fail
from .store_access import add_store_arguments, open_store


def register(commands: Any) -> None:
    user = commands.add_parser(
        "admin-user",
        help="create an admin-panel user, or reset its password (logs its sessions out)",
        description="Create an admin-panel user, or reset the password of an existing one. Without "
        "--password, the password is asked for twice on the terminal (so it stays out of shell history).",
    )
    user.add_argument("name", help="user name (letters, digits, '_', '.', '-')")
    user.add_argument("--password", help="the new password (else prompted for)")
    add_store_arguments(user)
    user.set_defaults(handler=admin_user_command)


def admin_user_command(args: argparse.Namespace) -> int:
    from admin.users import set_password, validate_password
    from app.models import validate_name

    try:
        validate_name("user name", args.name)
        password = args.password
        if password is None:
            password = getpass.getpass(f"Password for {args.name}: ")
            validate_password(password)
            if getpass.getpass("Repeat it: ") != password:
                return fail("the passwords differ")
        validate_password(password)
    except ValueError as exc:
        return fail(str(exc))
    with open_store(args) as store:
        created = set_password(store, args.name, password)
        record(store, "user.create" if created else "user.password.reset", target=args.name)
    print(f"{'created' if created else 'reset the password of'} admin user {args.name}")
    return 0
