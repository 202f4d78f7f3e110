"""Progress as a CI log shows it (plain lines, heartbeats) and as a terminal shows it (bars)."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from envbuild.cli.console import Context
from envbuild.cli.progress import Bars, PlainLines, progress
from envbuild.progress import SILENT, Progress, duration_text, size_text


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def plain(heartbeat: float = 30) -> tuple[PlainLines, Progress, Clock, list[str]]:
    lines: list[str] = []
    clock = Clock()
    sink = PlainLines(lines.append, heartbeat=heartbeat, clock=clock)
    return sink, Progress(sink, clock=clock), clock, lines


def test_a_phase_is_a_line_when_it_starts_and_one_with_its_size_and_time_when_it_ends() -> None:
    _sink, report, clock, lines = plain()
    with report.phase("cpu-infer", "fetching wheels", items="wheels") as phase:
        for _ in range(41):
            phase.add_total(4_102_439)
            phase.advance(4_102_439)
            phase.item()
        clock.now += 3.14
    assert lines == [
        "cpu-infer: fetching wheels ...",
        "cpu-infer: fetching wheels: done, 41 wheels, 168.2 MB in 3.1 s",
    ]


def test_a_phase_without_bytes_or_items_says_only_its_time_and_a_summary_replaces_the_counts() -> None:
    _sink, report, clock, lines = plain()
    with report.phase("cpu-infer", "building with buildah"):
        clock.now += 150
    with report.phase("cpu-infer", "writing layers", items="layers") as phase:
        phase.advance(10)
        phase.finish("12 layers (3 compressed, 9 from the cache)")
        clock.now += 42
    report.status("cpu-infer", "unchanged")
    assert lines[1] == "cpu-infer: building with buildah: done in 2m30s"
    assert lines[3] == "cpu-infer: writing layers: done, 12 layers (3 compressed, 9 from the cache) in 42 s"
    assert lines[4] == "cpu-infer: unchanged"


def test_a_phase_that_raises_ends_as_failed() -> None:
    _sink, report, clock, lines = plain()
    with pytest.raises(RuntimeError), report.phase("push", "pushing to r/x:y"):
        clock.now += 1.5
        raise RuntimeError("boom")
    assert lines == ["push: pushing to r/x:y ...", "push: pushing to r/x:y: failed after 1.5 s"]


def test_heartbeat_lines_come_every_interval_while_a_phase_runs() -> None:
    sink, report, clock, lines = plain(heartbeat=30)
    with report.phase("gpu-infer", "building with buildah") as phase:
        clock.now += 29
        sink.beat()  # not due yet
        assert len(lines) == 1
        clock.now += 1
        phase.say("STEP 3/9: RUN    --mount=type=bind,source=x \\\n   uv pip install ...")
        sink.beat()
        clock.now += 10
        sink.beat()  # 10 s after the last line: not due
        clock.now += 110
        sink.beat()
    with report.phase("gpu-infer", "fetching wheels", items="wheels") as phase:
        phase.add_total(2_000_000_000)
        phase.advance(500_000_000)
        phase.item(3)
        clock.now += 30
        sink.beat()
    assert lines[1:3] == [
        "gpu-infer: building with buildah ... 30 s, STEP 3/9: RUN --mount=type=bind,source=x \\ uv pip install ...",
        "gpu-infer: building with buildah ... 2m30s, STEP 3/9: RUN --mount=type=bind,source=x \\ uv pip install ...",
    ]
    assert lines[5] == "gpu-infer: fetching wheels ... 30 s, 500.0 MB of 2.0 GB, 3 wheels"


def test_the_heartbeat_thread_writes_while_a_phase_runs_and_stops_with_the_renderer() -> None:
    lines: list[str] = []
    lock = threading.Lock()

    def write(line: str) -> None:
        with lock:
            lines.append(line)

    with PlainLines(write, heartbeat=0.05) as sink:
        report = Progress(sink)
        with report.phase("cpu-infer", "building with buildah"):
            time.sleep(0.5)
    count = len(lines)
    time.sleep(0.2)
    beats = [line for line in lines if line.startswith("cpu-infer: building with buildah ... ")]
    assert len(beats) >= 3, lines
    assert lines[-1].startswith("cpu-infer: building with buildah: done in ")
    assert len(lines) == count  # nothing after the end


def test_heartbeat_zero_means_none() -> None:
    sink, report, clock, lines = plain(heartbeat=0)
    with sink, report.phase("cpu-infer", "building with buildah"):
        clock.now += 1000
        time.sleep(0.05)
    assert len(lines) == 2


def test_bars_on_a_terminal_leave_each_phase_end_line() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with Bars(console) as bars:
        report = Progress(bars)
        with report.phase("cpu-infer", "pushing to r/x:cpu-infer", items="blobs") as phase:
            phase.add_total(5_000_000)
            phase.advance(5_000_000)
            phase.item()
            phase.say("[bold]not markup[/]")
    text = out.getvalue()
    assert "cpu-infer: pushing to r/x:cpu-infer: done, 1 blob, 5.0 MB in" in text


@pytest.mark.parametrize(("verbosity", "expected"), [(-1, "silent"), (0, "lines")])
def test_quiet_is_silent_and_a_pipe_gets_lines(
    verbosity: int, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = Context(directory=Path(), json=True, verbosity=verbosity, heartbeat=0)
    with progress(ctx) as report, report.phase("cpu-infer", "fetching wheels"):
        pass
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout is for data only
    if expected == "silent":
        assert report is SILENT and captured.err == ""
    else:
        assert captured.err.splitlines() == [
            "cpu-infer: fetching wheels ...",
            "cpu-infer: fetching wheels: done in 0.0 s",
        ]


def test_sizes_and_durations_read_like_rich_shows_them() -> None:
    assert [size_text(n) for n in (0, 999, 1000, 168_200_000, 3_400_000_000)] == [
        "0 bytes", "999 bytes", "1.0 kB", "168.2 MB", "3.4 GB",
    ]  # fmt: skip
    assert [duration_text(s) for s in (3.14, 42, 150, 3900)] == ["3.1 s", "42 s", "2m30s", "1h05m"]
