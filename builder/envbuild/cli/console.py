"""What every command shares: its context (directory, --json, verbosity), stderr, and the log on it.

Kept apart from cli.py so that command modules (cli_supply, ci_cli) can use it without
importing the CLI that imports them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class Context:
    """Options every command shares."""

    directory: Path
    json: bool
    verbosity: int
    heartbeat: float = 30.0  # seconds between a long phase's lines when stderr is not a terminal (0: none)

    def say(self, text: str) -> None:
        """A human line on stderr, unless --quiet."""
        if self.verbosity >= 0:
            err.print(escape(text))

    def emit(self, data: Any) -> None:
        """Machine-readable output on stdout."""
        click.echo(json.dumps(data, indent=2, sort_keys=True))


pass_ctx = click.make_pass_decorator(Context)


class ConsoleHandler(logging.Handler):
    """Log records on stderr through the console, so that they print above live progress bars, not into them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            err.print(self.format(record), markup=False, highlight=False)
        except Exception:
            self.handleError(record)
