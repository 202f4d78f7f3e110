"""What every command shares: its context (directory, --json, verbosity), stderr, and live progress.

Kept apart from cli.py so that command modules (cli_supply, ci_cli) can use it without
importing the CLI that imports them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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

    def say(self, text: str) -> None:
        """A human line on stderr, unless --quiet."""
        if self.verbosity >= 0:
            err.print(escape(text))

    def emit(self, data: Any) -> None:
        """Machine-readable output on stdout."""
        click.echo(json.dumps(data, indent=2, sort_keys=True))


pass_ctx = click.make_pass_decorator(Context)


@contextmanager
def progress(ctx: Context) -> Iterator[Callable[[str, str], None]]:
    """A live per-target status on stderr; silent with --quiet or when stderr is not a terminal."""
    if ctx.verbosity < 0 or not err.is_terminal:
        yield lambda target, status: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True
    ) as bar:
        tasks: dict[str, Any] = {}

        def report(target: str, status: str) -> None:
            if target not in tasks:
                tasks[target] = bar.add_task(f"{target}: {status}", total=1)
            bar.update(tasks[target], description=f"{target}: {status}", completed=1 if status == "resolved" else 0)

        yield report
