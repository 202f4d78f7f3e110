"""Benchmark envbuild's layer compressors against Python's gzip, pigz and the zstd CLI on one tar.

Run from the repository root::

    .venv/bin/python bench/compress.py [TAR] [--runs 3] [--json]

TAR defaults to a tar of the dev venv's site-packages (about 470 MB), made once into a
temporary directory. The rows run in turn, ``--runs`` times (interleaved, so drift in load
hits every row alike), each reading TAR and writing a file in the same temporary directory:

- ``python gzip -6``: gzip.GzipFile at level 6, mtime 0, one thread: what every layer went
  through before oci/compress.py;
- ``envbuild gzip``: oci.compress.GZIP (block-parallel, -6, 128 KiB blocks) on all cores;
- ``pigz -6``: pigz on all cores (``-p`` the usable cores);
- ``envbuild zstd``: oci.compress.ZSTD (-3, multi-threaded) on all cores;
- ``zstd -3 -T0``: the zstd CLI on all cores.

It prints the median seconds, MB/s (uncompressed MB over the median) and output size of each
row, and two ratios of medians: envbuild gzip / pigz and envbuild zstd / zstd CLI (MB/s; the
goal is at least 0.7 for each). It also checks that envbuild's outputs were byte-identical in
every run. pigz and zstd are needed (``apt-get install pigz zstd``), else exit status 2. The
exit status is 0 whether the goals pass or not: it measures, it does not gate.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import REPO, Timings, log, run, timed
from envbuild.oci.compress import GZIP, ZSTD, Compression

GOAL = 0.7
PIECE = 1 << 20


def default_tar(work: Path) -> Path:
    """A tar of the dev venv's site-packages: many small files and a few large libraries, like a venv layer."""
    found = sorted((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    if not found:
        sys.exit(f"bench: no site-packages under {REPO / '.venv' / 'lib'}: run scripts/setup.sh, or give a TAR")
    out = work / "site-packages.tar"
    run(["tar", "-C", found[0].parent, "-cf", out, found[0].name])
    return out


def python_gzip(source: Path, target: Path) -> None:
    """Today's path before oci/compress.py: Python's GzipFile at level 6 on one thread."""
    with (
        source.open("rb") as src,
        target.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=raw, mtime=0) as out,
    ):
        shutil.copyfileobj(src, out, PIECE)


def envbuild(method: Compression) -> Callable[[Path, Path], None]:
    """A row writing through ``method`` on all cores, fed 1 MiB at a time."""

    def compress(source: Path, target: Path) -> None:
        with source.open("rb") as src, target.open("wb") as raw, method.writer(raw) as out:
            while piece := src.read(PIECE):
                out.write(piece)

    return compress


def command(*argv: str) -> Callable[[Path, Path], None]:
    """A row running ``argv`` on the source, its stdout into the target."""

    def compress(source: Path, target: Path) -> None:
        with target.open("wb") as out:
            done = subprocess.run([*argv, str(source)], stdout=out)
        if done.returncode != 0:
            sys.exit(f"bench: {' '.join(argv)} failed ({done.returncode})")

    return compress


def time_row(compress: Callable[[Path, Path], None], source: Path, target: Path) -> float:
    """Wall-clock seconds of one row's run."""
    return timed(lambda: compress(source, target))[0]


def digest(path: Path) -> str:
    """The sha256 of a file: the outputs are compared across runs by it."""
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while piece := f.read(PIECE):
            hasher.update(piece)
    return hasher.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tar", nargs="?", type=Path, help="the tar to compress (default: the dev venv's site-packages)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    missing = [tool for tool in ("pigz", "zstd") if shutil.which(tool) is None]
    if missing:
        print(f"bench: {' and '.join(missing)} not installed: apt-get install pigz zstd", file=sys.stderr)
        return 2
    cores = len(os.sched_getaffinity(0))
    rows: dict[str, Callable[[Path, Path], None]] = {
        "python gzip -6 (1 thread)": python_gzip,
        "envbuild gzip": envbuild(GZIP),
        f"pigz -6 -p {cores}": command("pigz", "-6", "-p", str(cores), "-c"),
        "envbuild zstd": envbuild(ZSTD),
        "zstd -3 -T0": command("zstd", "-3", "-T0", "-q", "-c"),
    }
    with tempfile.TemporaryDirectory(prefix="envbuild-bench-compress-") as tmp:
        work = Path(tmp)
        source = args.tar or default_tar(work)
        size = source.stat().st_size
        digest(source)  # read once untimed: every row then reads it from the page cache
        log(f"{source}: {size / 1e6:.1f} MB, {cores} cores, {args.runs} runs")
        times: dict[str, list[float]] = {name: [] for name in rows}
        outputs: dict[str, tuple[int, set[str]]] = {}
        for i in range(1, args.runs + 1):
            for n, (name, compress) in enumerate(rows.items()):
                target = work / f"row-{n}.out"
                took = time_row(compress, source, target)
                times[name].append(took)
                hashes = outputs.get(name, (0, set()))[1] | {digest(target)}
                outputs[name] = (target.stat().st_size, hashes)
                target.unlink()
                log(f"run {i}/{args.runs}: {name}: {took:.2f} s")
    timings = [Timings(name=name, times=tuple(t)) for name, t in times.items()]
    summary = summarise(timings, outputs, size, cores)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_table(summary)
    return 0


def summarise(
    timings: list[Timings], outputs: dict[str, tuple[int, set[str]]], size: int, cores: int
) -> dict[str, Any]:
    """The rows and the two ratios as JSON-ready figures."""
    rows = {
        t.name: {
            **t.summary(),
            "mb_per_s": size / 1e6 / t.median,
            "output_bytes": outputs[t.name][0],
            "same_bytes_every_run": len(outputs[t.name][1]) == 1,
        }
        for t in timings
    }
    speed = {name: row["mb_per_s"] for name, row in rows.items()}
    names = list(rows)
    ratios = {
        "envbuild gzip / pigz": speed[names[1]] / speed[names[2]],
        "envbuild zstd / zstd CLI": speed[names[3]] / speed[names[4]],
    }
    return {
        "tar_bytes": size,
        "cores": cores,
        "gzip": GZIP.description,
        "zstd": ZSTD.description,
        "rows": rows,
        "ratios": {name: {"ratio": r, "goal": GOAL, "pass": r >= GOAL} for name, r in ratios.items()},
    }


def print_table(summary: dict[str, Any]) -> None:
    """The rows (median, min, max, MB/s, output size and compression ratio), the two ratios, the checks."""
    rows = summary["rows"]
    width = max(map(len, rows))
    runs = next(iter(rows.values()))["runs"]
    print(f"{summary['tar_bytes'] / 1e6:.1f} MB tar, {summary['cores']} cores, medians of {runs} runs")
    print(f"{'row':<{width}}  {'median s':>8}  {'min':>6}  {'max':>6}  {'MB/s':>6}  {'output MB':>9}  ratio")
    for name, row in rows.items():
        ratio = row["output_bytes"] / summary["tar_bytes"]
        print(
            f"{name:<{width}}  {row['median']:>8.2f}  {row['min']:>6.2f}  {row['max']:>6.2f}  {row['mb_per_s']:>6.1f}"
            f"  {row['output_bytes'] / 1e6:>9.1f}  {ratio:.3f}"
        )
    for name, ratio in summary["ratios"].items():
        verdict = "PASS" if ratio["pass"] else "FAIL"
        print(f"{name} (MB/s): {ratio['ratio']:.2f}  (goal >= {ratio['goal']})  {verdict}")
    same = all(rows[name]["same_bytes_every_run"] for name in rows if name.startswith("envbuild"))
    print(f"envbuild's outputs identical in every run: {'yes' if same else 'NO'}")
    print(f"compressors: {summary['gzip']}; {summary['zstd']}")


if __name__ == "__main__":
    sys.exit(main())
