"""How progress looks on stderr: bars on a terminal, plain lines in a log, nothing with --quiet.

The library reports phases through :class:`envbuild.progress.Progress`; the sinks here draw
them. On a terminal (:class:`Bars`): a bar per running phase with its bytes and rate, and a line
when it ends. Anywhere else, a CI log above all (:class:`PlainLines`): a line when a phase starts,
a line when it ends with its size and elapsed time, and a heartbeat line every ``--heartbeat``
seconds (``ENVBUILD_HEARTBEAT``, default 30) while a phase runs, so that a log never looks hung.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

from envbuild.cli.console import Context, err
from envbuild.progress import SILENT, Phase, Progress, duration_text, size_text
from envbuild.words import counted

DEFAULT_HEARTBEAT = 30.0
_NOTE_WIDTH = 72


@contextmanager
def progress(ctx: Context) -> Iterator[Progress]:
    """The progress of one command: bars on a terminal, lines elsewhere, none with --quiet."""
    if ctx.verbosity < 0:
        yield SILENT
        return
    if err.is_terminal:
        with Bars(err) as bars:
            yield Progress(bars)
        return
    with PlainLines(_print, heartbeat=ctx.heartbeat) as lines:
        yield Progress(lines)


def _print(line: str) -> None:
    err.print(line, markup=False, highlight=False)


def end_line(phase: Phase, elapsed: float, *, failed: bool) -> str:
    """The line that ends a phase: ``cpu-infer: fetching wheels: done, 41 wheels, 168.2 MB in 3.1 s``."""
    head = f"{phase.target}: {phase.name}"
    if failed:
        return f"{head}: failed after {duration_text(elapsed)}"
    parts = []
    if phase.summary:
        parts.append(phase.summary)
    else:
        if phase.items is not None:
            parts.append(counted(phase.count, phase.items))
        if phase.done or phase.total:
            parts.append(size_text(phase.done))
    return f"{head}: {', '.join(['done', *parts])} in {duration_text(elapsed)}"


def heartbeat_line(phase: Phase, elapsed: float) -> str:
    """A line while a phase runs: ``cpu-infer: building with buildah ... 2m30s, STEP 3/9: RUN ...``."""
    parts = [f"{phase.target}: {phase.name} ... {duration_text(elapsed)}"]
    if phase.total:
        parts.append(f"{size_text(phase.done)} of {size_text(phase.total)}")
    elif phase.done:
        parts.append(size_text(phase.done))
    if phase.items is not None and phase.count:
        parts.append(counted(phase.count, phase.items))
    if phase.note:
        parts.append(_short(phase.note))
    return ", ".join(parts)


def _short(text: str) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= _NOTE_WIDTH else line[: _NOTE_WIDTH - 3] + "..."


class PlainLines:
    """Progress as plain lines, for logs: a phase's start, its end, and a heartbeat while it runs.

    ``heartbeat`` is in seconds (0: none); each running phase gets a line when that long has
    passed since its last one. :meth:`beat` writes the lines that are due; a thread calls it.
    """

    def __init__(self, write: Callable[[str], None], *, heartbeat: float, clock: Callable[[], float] = time.monotonic):
        self._write = write
        self._heartbeat = heartbeat
        self._clock = clock
        self._running: dict[int, tuple[Phase, float]] = {}  # id(phase) -> (phase, when its last line was written)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PlainLines:
        if self._heartbeat > 0:
            self._thread = threading.Thread(target=self._beat_until_stopped, name="envbuild-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _beat_until_stopped(self) -> None:
        while not self._stop.wait(min(self._heartbeat, 1.0)):
            self.beat()

    def beat(self) -> None:
        """Write a heartbeat line for each phase whose last line is ``heartbeat`` seconds old."""
        now = self._clock()
        with self._lock:
            due = [phase for phase, last in self._running.values() if now - last >= self._heartbeat]
            for phase in due:
                self._running[id(phase)] = (phase, now)
                self._write(heartbeat_line(phase, now - phase.started))

    def status(self, target: str, text: str) -> None:
        """A line: ``target: text``."""
        with self._lock:
            self._write(f"{target}: {text}")

    def started(self, phase: Phase) -> None:
        """A line: ``target: name ...``."""
        with self._lock:
            self._running[id(phase)] = (phase, self._clock())
            self._write(f"{phase.target}: {phase.name} ...")

    def changed(self, phase: Phase) -> None:
        """Nothing: the heartbeat says how far a phase got."""

    def ended(self, phase: Phase, *, failed: bool) -> None:
        """A line with the phase's size and elapsed time (:func:`end_line`)."""
        with self._lock:
            self._running.pop(id(phase), None)
            self._write(end_line(phase, self._clock() - phase.started, failed=failed))


class _Bytes(DownloadColumn):
    """Bytes done (of the total), for phases that count bytes."""

    def render(self, task: Any) -> Text:
        return super().render(task) if task.fields.get("bytes") else Text("")


class _Rate(TransferSpeedColumn):
    """Bytes per second, for phases that count bytes."""

    def render(self, task: Any) -> Text:
        return super().render(task) if task.fields.get("bytes") else Text("")


class Bars:
    """Progress on a terminal: a bar per running phase (bytes, rate, elapsed), a line when one ends."""

    def __init__(self, console: Console):
        self._bar = RichProgress(
            SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(), _Bytes(), _Rate(),
            TimeElapsedColumn(), console=console, transient=True,
        )  # fmt: skip
        self._tasks: dict[int, TaskID] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Bars:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def status(self, target: str, text: str) -> None:
        """A line above the bars."""
        self._bar.console.print(f"{target}: {text}", markup=False, highlight=False)

    def started(self, phase: Phase) -> None:
        """A new bar."""
        with self._lock:
            self._tasks[id(phase)] = self._bar.add_task(_description(phase), total=phase.total, bytes=False)

    def changed(self, phase: Phase) -> None:
        """The bar follows the phase."""
        task = self._tasks.get(id(phase))
        if task is not None:
            self._bar.update(
                task, description=_description(phase), completed=phase.done, total=phase.total,
                bytes=bool(phase.done or phase.total),
            )  # fmt: skip

    def ended(self, phase: Phase, *, failed: bool) -> None:
        """The bar goes; its end line stays."""
        with self._lock:
            task = self._tasks.pop(id(phase), None)
        if task is not None:
            self._bar.remove_task(task)
        line = end_line(phase, time.monotonic() - phase.started, failed=failed)
        self._bar.console.print(line, markup=False, highlight=False)


def _description(phase: Phase) -> str:
    text = f"{phase.target}: {phase.name}"
    if phase.items is not None and phase.count:
        text += f" ({counted(phase.count, phase.items)})"
    if phase.note:
        text += f" [{_short(phase.note)}]"
    return text
