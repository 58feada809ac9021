"""The ``python -m app`` command line: one module per family of commands, each adding its subcommands.

Every command ends with one line on stderr when it fails and an exit code from :mod:`.errors` (listed in
``python -m app --help``): a handler raises or returns; nothing reaches the user as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import (
    admin_user_command,
    app_commands,
    client_commands,
    config_commands,
    monitor_command,
    run,
    shard_commands,
)
from .errors import INTERRUPTED, OK, CliError, exit_codes_epilog, explain, fail

COMMAND_MODULES = (
    run,
    config_commands,
    client_commands,
    shard_commands,
    app_commands,
    monitor_command,
    admin_user_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Cobra-protocol pub/sub broker",
        epilog=exit_codes_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or OK)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # `python -m app subscribe ... | head`
        sys.stderr.close()
        return OK
    except CliError as exc:
        return fail(str(exc), exc.code)
    except Exception as exc:  # the last resort: one line, never a traceback
        error = explain(
            exc, getattr(args, "endpoint", ""), getattr(args, "appkey", ""), getattr(args, "rolename", "")
        )
        return fail(str(error), error.code)
