"""Progress: what a long operation tells whoever runs it, in a small vocabulary.

Library code is given a :class:`Progress` and reports through it; it never prints. A *phase* is
one step of one target (a variant, a lock target, a push): it starts, may learn a size in bytes
and advance through it, may count items (wheels, layers, blobs) and carry a note (a tool's last
output line), and ends with an optional summary. A *status* is a one-off word about a target
("unchanged"). A :class:`Sink` draws them: the CLI has one for terminals (bars with bytes and
rates) and one for logs (a line when a phase starts and ends, a heartbeat between); the default,
:data:`SILENT`, draws nothing.

    with progress.phase("cpu-infer", "fetching wheels", items="wheels") as phase:
        phase.add_total(size)
        phase.advance(len(chunk))
        phase.item()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol


class Sink(Protocol):
    """Where progress goes; called from any thread, so an implementation takes its own lock."""

    def status(self, target: str, text: str) -> None:
        """A one-off status of ``target``."""
        ...

    def started(self, phase: Phase) -> None:
        """``phase`` began."""
        ...

    def changed(self, phase: Phase) -> None:
        """``phase`` advanced, learnt a size, counted an item or got a note."""
        ...

    def ended(self, phase: Phase, *, failed: bool) -> None:
        """``phase`` ended (``failed``: by an exception)."""
        ...


class Phase:
    """One running phase of one target: a live object its owner advances and a sink reads.

    Sizes and counts may be reported from several threads (parallel downloads, uploads).
    """

    def __init__(self, *, target: str, name: str, total: int | None, items: str | None, sink: Sink, started: float):
        self.target = target
        self.name = name
        self.total = total  # bytes, when known
        self.items = items  # what count() counts, e.g. "wheels"; None: nothing counted
        self.started = started  # on the Progress's clock
        self.done = 0  # bytes
        self.count = 0
        self.note = ""
        self.summary = ""  # said when the phase ends; default: the count and the bytes
        self._sink = sink
        self._lock = threading.Lock()

    def advance(self, n: int) -> None:
        """``n`` more bytes done."""
        with self._lock:
            self.done += n
        self._sink.changed(self)

    def add_total(self, n: int) -> None:
        """``n`` more bytes to do (a size learnt on the way, e.g. a download's length)."""
        with self._lock:
            self.total = (self.total or 0) + n
        self._sink.changed(self)

    def item(self, n: int = 1) -> None:
        """``n`` more items (of ``items``) done."""
        with self._lock:
            self.count += n
        self._sink.changed(self)

    def say(self, text: str) -> None:
        """The latest detail, e.g. a tool's last output line (a renderer may show it, or not)."""
        self.note = " ".join(text.split())  # one line, however the tool wrapped or indented it
        self._sink.changed(self)

    def finish(self, summary: str) -> None:
        """What the end of the phase says instead of the count and the bytes."""
        self.summary = summary


class Progress:
    """The handle library code reports through; :data:`SILENT` when nobody watches."""

    def __init__(self, sink: Sink | None = None, *, clock: Callable[[], float] = time.monotonic):
        self.sink: Sink = sink if sink is not None else _Nothing()
        self.clock = clock

    def status(self, target: str, text: str) -> None:
        """A one-off status of ``target`` (e.g. "unchanged")."""
        self.sink.status(target, text)

    @contextmanager
    def phase(self, target: str, name: str, *, total: int | None = None, items: str | None = None) -> Iterator[Phase]:
        """A phase of ``target`` for the ``with`` block: it ends with the block, failed if the block raises."""
        phase = Phase(target=target, name=name, total=total, items=items, sink=self.sink, started=self.clock())
        self.sink.started(phase)
        try:
            yield phase
        except BaseException:
            self.sink.ended(phase, failed=True)
            raise
        self.sink.ended(phase, failed=False)


class _Nothing:
    """The sink of :data:`SILENT`."""

    def status(self, target: str, text: str) -> None:
        pass

    def started(self, phase: Phase) -> None:
        pass

    def changed(self, phase: Phase) -> None:
        pass

    def ended(self, phase: Phase, *, failed: bool) -> None:
        pass


SILENT = Progress()


def size_text(n: float) -> str:
    """A byte count for people, in decimal units as rich's DownloadColumn shows them: 168.2 MB."""
    for unit in ("bytes", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def duration_text(seconds: float) -> str:
    """A duration for people: 3.1 s, 42 s, 2m30s, 1h05m."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
