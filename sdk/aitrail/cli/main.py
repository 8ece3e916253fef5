"""The ``aitrail`` command.

Exit codes: 0 success; 1 verification found problems; 2 usage or connection
errors. The store-reading commands are the SDK's own (``aitrail.cli.commands``).
The collector's commands (collector, demo, user, apikey, erase, ...) register
themselves through the entry-point group ``aitrail.commands``: each entry point
is a callable that adds its subcommand to the parser. The SDK never imports the
collector; with the SDK alone, ``aitrail --help`` says how to get them.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import entry_points
from typing import Optional, Sequence

from aitrail.cli import commands
from aitrail.cli.base import COLLECTOR_EXTRA, EXIT_OK, EXIT_USAGE, UsageError
from aitrail.cli.output import safe
from aitrail.cli.remote import ClientError
from aitrail.errors import AitrailError

COMMAND_GROUP = "aitrail.commands"


def _add_plugins(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[str]:
    """Commands from installed plugins; returns the names of those that could not load."""
    missing = []
    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        if ep.name in sub.choices:  # two installs of the same plugin: the first one wins
            continue
        try:
            ep.load()(sub)
        except ImportError:
            missing.append(ep.name)
    return missing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aitrail",
                                     description="Tamper-evident audit trail for AI systems.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.register(sub)
    missing = _add_plugins(sub)
    if missing or not entry_points(group=COMMAND_GROUP):
        parser.epilog = ("The collector's commands (collector, demo, user, apikey, erase) come "
                         f"with the collector extra: {COLLECTOR_EXTRA}")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except (UsageError, ClientError) as exc:
        sys.stderr.write(f"aitrail {args.command}: {safe(exc)}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except AitrailError as exc:
        sys.stderr.write(f"aitrail {args.command}: {safe(exc)}\n")
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - one clear line unless debugging
        if os.environ.get("AITRAIL_DEBUG"):
            raise
        sys.stderr.write(f"aitrail {args.command}: {type(exc).__name__}: {safe(exc)} "
                         "(set AITRAIL_DEBUG=1 for a traceback)\n")
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
