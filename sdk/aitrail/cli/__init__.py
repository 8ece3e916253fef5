"""The ``aitrail`` command line: the store-reading commands, and the collector's
commands when the collector extra is installed (entry-point group
``aitrail.commands``)."""

from aitrail.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
