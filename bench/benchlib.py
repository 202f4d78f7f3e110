"""What the benchmarks under bench/ share: running and timing a command, their environments, progress, rows.

Each script imports it as ``benchlib`` (scripts run from bench/ have it on ``sys.path``).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

T = TypeVar("T")


def run(
    args: Sequence[str | Path], *, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: int = 3600
) -> str:
    """Run one command and return its stdout; on failure, exit with its stderr so a broken row is never timed."""
    argv = [str(a) for a in args]
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        sys.exit(f"bench: command failed ({done.returncode}): {' '.join(argv)}\n{done.stderr[-4000:]}")
    return done.stdout


def log(message: str) -> None:
    """One progress line on stderr (stdout is for the table or the JSON)."""
    print(message, file=sys.stderr, flush=True)


def timed(action: Callable[[], T]) -> tuple[float, T]:
    """Wall-clock seconds ``action()`` takes, and what it returned."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def pip_env() -> dict[str, str]:
    """The environment, isolated from the pip configuration (extra indexes, find-links, constraints) here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def envbuild_env(pycache: Path, *, keep_cache: bool = False) -> dict[str, str]:
    """The environment for envbuild: no ENVBUILD_* settings, and a bytecode cache in ``pycache``.

    Without ENVBUILD_* a developer's settings (ENVBUILD_JOBS, ...) cannot move the figures;
    ``keep_cache`` keeps ENVBUILD_CACHE_DIR, where a build's warm bases and wheels are. The
    bytecode cache: the dev venv holds no .pyc files (uv does not compile at install), and with
    PYTHONDONTWRITEBYTECODE=1 in the environment (common in containers and CI) every run would
    compile envbuild, click, rich and requests from source again, about 0.2 s per run. An
    installed envbuild has its .pyc files, so the warm-up run fills a private cache and the
    timed runs use it.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if (not k.startswith("ENVBUILD_") or (keep_cache and k == "ENVBUILD_CACHE_DIR"))
        and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


@dataclass(frozen=True, kw_only=True)
class Timings:
    """The timed runs of one benchmarked command: a row of the table."""

    name: str
    times: tuple[float, ...]

    @property
    def median(self) -> float:
        """Median wall-clock seconds."""
        return statistics.median(self.times)

    def summary(self) -> dict[str, Any]:
        """The row as JSON-ready figures."""
        return {
            "name": self.name,
            "median": self.median,
            "min": min(self.times),
            "max": max(self.times),
            "runs": len(self.times),
            "times": list(self.times),
        }

    def cells(self, width: int) -> str:
        """The row's name (padded to ``width``), median, min, max and number of runs."""
        return (
            f"{self.name:<{width}}  {self.median:>9.2f}  {min(self.times):>7.2f}  {max(self.times):>7.2f}"
            f"  {len(self.times):>4}"
        )


def timing_header(width: int) -> str:
    """The column titles above :meth:`Timings.cells`."""
    return f"{'row':<{width}}  {'median s':>9}  {'min':>7}  {'max':>7}  {'runs':>4}"


def timing_table(rows: Sequence[Timings]) -> list[str]:
    """The header and one line per row: name, median, min, max, runs."""
    width = max(len(r.name) for r in rows)
    return [timing_header(width), *(r.cells(width) for r in rows)]
