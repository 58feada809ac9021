"""The ``python -m app`` command line: one module per family of commands, each adding its subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import admin_commands, clients, config_commands, ops_commands, run, shard_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description="Cobra-protocol pub/sub broker")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (run, config_commands, clients, shard_commands, ops_commands, admin_commands):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `python -m app subscribe ... | head`
        sys.stderr.close()
        return 0
