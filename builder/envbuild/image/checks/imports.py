"""Importing modules with the image's own Python, inside the image (:mod:`envbuild.image.checks.sandbox`).

One interpreter imports the modules one after the other and says, on its own copy of stdout,
when each starts and how it ended; what the modules print goes to stderr. An interpreter that
dies inside an import (a crash, os._exit) or hangs there names that module, and a new one
goes on with the rest.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from envbuild.errors import ToolError, ToolMissingError
from envbuild.image.checks.sandbox import Sandbox, run_in_image

_MARK = "envbuild-check: "
# Run by the image's Python (any 3.x): keep it to what every version has.
_SCRIPT = r"""
import importlib, importlib.util, json, os, sys, traceback
sys.path[0] = os.getcwd()  # as for python -m and -c, not this script's directory
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
def say(*values):
    out.write("%s%s\n" % (MARK, json.dumps(values)))
    out.flush()
for kind, name in json.loads(sys.argv[1]):
    say("start", name)
    problem = None
    try:
        if kind == "find":
            if importlib.util.find_spec(name) is None:
                problem = "ModuleNotFoundError: No module named %r" % name
        else:
            importlib.import_module(name)
    except BaseException as exc:
        kind = type(exc).__name__
        text = "".join(traceback.format_exception_only(type(exc), exc))
        last = ([line.strip() for line in text.splitlines() if line.strip()] or [kind])[-1]
        problem = last if last.startswith(kind) else "%s: %s" % (kind, last)
    say("done", name, problem)
out.flush()
os._exit(0)
""".replace("MARK", repr(_MARK))


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One module imported (``kind`` "import") or looked up without running it (``kind`` "find")."""

    kind: str
    module: str


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """How an attempt ended: ``problem`` is the exception's last line, None when it worked."""

    attempt: Attempt
    problem: str | None


def try_imports(
    sandbox: Sandbox,
    python: str,
    attempts: Sequence[Attempt],
    *,
    timeout: float = 600,
    started: Callable[[str], None] | None = None,
) -> list[Outcome]:
    """Make every attempt with the image's interpreter ``python`` (an image path); one outcome each, in order."""
    outcomes: list[Outcome] = []
    todo = list(attempts)
    # In a file of the image's root (where a module cannot name it), so that -v logs a short command.
    script = "/.envbuild-import-check.py"
    (sandbox.root / script[1:]).write_text(_SCRIPT, encoding="utf-8")
    (sandbox.root / script[1:]).chmod(0o644)
    while todo:
        events = _Events(started)
        line = events.line
        plan = json.dumps([[a.kind, a.module] for a in todo])
        ending = None
        try:
            result = run_in_image(
                sandbox, [python, "-B", script, plan], tool="import check", timeout=timeout, lines=line
            )
            if result.returncode != 0:
                ending = _death(result.returncode, result.stderr)
        except ToolMissingError:
            raise
        except ToolError:  # proc.run's timeout: the run was stopped
            ending = f"did not finish within {timeout:g} s"
        done = [e for e in events.seen if e[0] == "done"]
        for attempt, event in zip(todo, done, strict=False):
            problem = event[2] if len(event) > 2 and isinstance(event[2], str) else None
            outcomes.append(Outcome(attempt=attempt, problem=problem))
        todo = todo[len(done) :]
        if not todo:
            break
        if sum(1 for e in events.seen if e[0] == "start") == len(done):
            # It never started the next one: the interpreter itself fails, and would again.
            return outcomes + [Outcome(attempt=a, problem=f"the image's Python {ending or 'stopped'}") for a in todo]
        outcomes.append(Outcome(attempt=todo[0], problem=f"the interpreter {ending or 'stopped'} during this import"))
        todo = todo[1:]
    return outcomes


class _Events:
    """The script's reports, picked out of the lines a run prints."""

    def __init__(self, started: Callable[[str], None] | None):
        self.started = started
        self.seen: list[list[object]] = []

    def line(self, text: str) -> None:
        if not text.startswith(_MARK):
            return  # what a module printed
        try:
            event = json.loads(text[len(_MARK) :])
        except ValueError:
            return
        if isinstance(event, list) and len(event) >= 2:
            self.seen.append(event)
            if event[0] == "start" and self.started is not None:
                self.started(str(event[1]))


def _death(returncode: int, stderr: str) -> str:
    """How a run ended, in words: killed by a signal, or an exit status with the last line of stderr."""
    # The sandbox exits with 128 + the signal that killed the program.
    if returncode > 128:
        number = returncode - 128
        name = signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"
        return f"was killed by {name}"
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    return f"exited with status {returncode}" + (f" ({last})" if last else "")
