"""Benchmark the scratch disk and time of a cold ``envbuild image`` build, per envbuild revision and buildah driver.

Run from the repository root::

    .venv/bin/python bench/disk.py                                    # HEAD with overlay, then with vfs
    .venv/bin/python bench/disk.py --row 59ce0a0 --row HEAD:vfs --row HEAD:overlay [--json]

Each row is ``REVISION[:DRIVER]``: a fresh ``git clone`` of this repository checked out at
REVISION builds the variant (default gpu-infer) with the envbuild of that same revision
(``PYTHONPATH=<clone>/builder``), so an old revision is measured with its own code, template
and storage handling; DRIVER sets ``ENVBUILD_BUILDAH_DRIVER`` (revisions before the variable
existed ignore it and use vfs). Every row is cold (no previous image, fresh buildah storage, an
empty layer cache) with warm bases and wheels: an untimed staging run fills the user's envbuild
cache first, and its bases and wheels are copied into a private cache for the rows.

The builds run on a file system of their own (as root: an ext4 image file, loop-mounted, in
``$TMPDIR``; ``--in-place`` builds in ``$TMPDIR`` itself), so that nothing else writing to the
disk shows in the figures. While a row builds, a thread reads that file system's used bytes
(``os.statvfs``) every ``--interval`` seconds; the row reports the peak over the value at its
start, the wall-clock seconds, and the image's layer tars in bytes. One run per row; rows run
one after another. Progress goes to stderr, the table (or the JSON) to stdout. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import REPO, envbuild_env, log, run
from build import read_image
from envbuild.workspace import default_cache

GB = 1e9
_DRIVER_LINE = re.compile(r"buildah: (\w+) storage driver")


@dataclass(frozen=True, kw_only=True)
class RowSpec:
    """One row to measure: an envbuild revision, and the buildah driver to force (None: its own choice)."""

    revision: str
    driver: str | None

    @classmethod
    def parse(cls, text: str) -> RowSpec:
        """``REVISION`` or ``REVISION:DRIVER``."""
        revision, _, driver = text.partition(":")
        if driver not in ("", "overlay", "vfs"):
            sys.exit(f"bench: {text}: the driver is overlay or vfs")
        return cls(revision=revision, driver=driver or None)


@dataclass(frozen=True, kw_only=True)
class Result:
    """What one cold build took: seconds, the scratch-disk peak, and the image it made."""

    row: RowSpec
    commit: str
    driver: str  # what envbuild said it used, else what it must have used
    seconds: float
    peak: int  # bytes: the most the file system's use rose above its use at the start
    left: int  # bytes: its use at the end over the start (the image and the staged inputs stay)
    image_tars: int  # bytes: the image's layer tars, uncompressed
    image_blobs: int  # bytes: the image's layer blobs, as a registry stores them
    digest: str

    def summary(self) -> dict[str, Any]:
        """The row as JSON-ready figures."""
        return {
            "revision": self.row.revision, "commit": self.commit, "driver": self.driver, "seconds": self.seconds,
            "peak_bytes": self.peak, "left_bytes": self.left, "image_tar_bytes": self.image_tars,
            "image_blob_bytes": self.image_blobs, "peak_over_image": self.peak / self.image_tars, "digest": self.digest,
        }  # fmt: skip


class DiskWatch:
    """Polls the used bytes of the file system holding ``path`` in a thread; keeps the start and the peak."""

    def __init__(self, path: Path, interval: float):
        self.path, self.interval = path, interval
        self.start = self.peak = used_bytes(path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> DiskWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, used_bytes(self.path))


def used_bytes(path: Path) -> int:
    """Bytes in use on the file system holding ``path``, as df counts them."""
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def clone_at(revision: str, dest: Path) -> tuple[Path, str]:
    """A fresh clone of this repository at ``revision``; returns it and the full commit id."""
    run(["git", "clone", "--quiet", REPO, dest])
    run(["git", "-C", dest, "checkout", "--quiet", "--detach", revision])
    return dest, run(["git", "-C", dest, "rev-parse", "HEAD"]).strip()


def envbuild(root: Path, where: Workplace, driver: str | None) -> tuple[list[str], dict[str, str]]:
    """The command prefix and environment that run the envbuild of the clone at ``root``, in it."""
    env = envbuild_env(where.pycache)
    env.update(PYTHONPATH=str(root / "builder"), ENVBUILD_CACHE_DIR=str(where.cache), TMPDIR=str(where.tmp))
    if driver is not None:
        env["ENVBUILD_BUILDAH_DRIVER"] = driver
    return [sys.executable, "-m", "envbuild", "-C", str(root)], env


@dataclass(frozen=True, kw_only=True)
class Workplace:
    """Where the rows build: the watched file system, its private envbuild cache, its temporary directory."""

    root: Path
    pycache: Path

    @property
    def cache(self) -> Path:
        """The rows' envbuild cache: the user's bases and wheels, and no layers."""
        return self.root / "cache"

    @property
    def tmp(self) -> Path:
        """$TMPDIR for the rows."""
        return self.root / "tmp"


@contextlib.contextmanager
def workplace(scratch: Path, size_gb: int) -> Iterator[Workplace]:
    """A file system of ``size_gb`` of its own under ``scratch`` (loop-mounted ext4), or ``scratch`` itself (0)."""
    pycache = scratch / "pycache"
    if size_gb == 0:
        yield Workplace(root=scratch / "builds", pycache=pycache)
        return
    image, mount = scratch / "fs.img", scratch / "fs"
    with image.open("wb") as f:
        f.truncate(size_gb * 1024**3)  # sparse: takes disk only as the builds write
    run(["mkfs.ext4", "-q", "-F", image])
    mount.mkdir()
    run(["mount", "-o", "loop,discard", image, mount])
    try:
        yield Workplace(root=mount, pycache=pycache)
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def warm_cache(scratch: Path, variant: str, where: Workplace) -> None:
    """Fill the user's envbuild cache with the variant's base, wheels and uv (no build); copy them to ``where``."""
    root, _ = clone_at("HEAD", scratch / "warm")
    env = {**envbuild_env(where.pycache, keep_cache=True), "PYTHONPATH": str(root / "builder")}
    started = time.perf_counter()
    argv = [sys.executable, "-m", "envbuild", "-C", str(root), "-q", "dockerfile", "--print-build-command"]
    run([*argv, "--variant", variant], env=env, timeout=7200)
    shutil.rmtree(root)
    user_cache = Path(env.get("ENVBUILD_CACHE_DIR") or default_cache())
    for part in ("bases", "wheels"):
        shutil.copytree(user_cache / part, where.cache / part, symlinks=True, dirs_exist_ok=True)
    where.tmp.mkdir(parents=True, exist_ok=True)
    log(f"warm-up: {variant}'s bases and wheels from {user_cache} ({time.perf_counter() - started:.0f} s)")


def measure(row: RowSpec, where: Workplace, variant: str, interval: float) -> Result:
    """One cold build of ``variant`` in a fresh clone at the row's revision, watched."""
    shutil.rmtree(where.cache / "layers", ignore_errors=True)  # cold: no layer written before
    root, commit = clone_at(row.revision, where.root / "clone")
    prefix, env = envbuild(root, where, row.driver)
    argv = [*prefix, "-v", "image", "--variant", variant]
    log(f"{row.revision} ({commit[:12]}), driver {row.driver or 'default'}: building {variant}")
    with DiskWatch(where.root, interval) as watch:
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=7200)
        seconds = time.perf_counter() - started
        end = used_bytes(where.root)
    if done.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    said = _DRIVER_LINE.search(done.stderr)
    image = read_image(root / ".envbuild" / "images" / variant)
    shutil.rmtree(root)
    result = Result(
        row=row, commit=commit, driver=said.group(1) if said else "vfs (fixed)", seconds=seconds,
        peak=watch.peak - watch.start, left=end - watch.start, image_tars=image.uncompressed,
        image_blobs=image.compressed, digest=image.digest,
    )  # fmt: skip
    log(f"  {seconds:.0f} s, peak {result.peak / GB:.2f} GB over start, image tars {image.uncompressed / GB:.2f} GB")
    return result


def table(results: list[Result], variant: str) -> str:
    """The rows as a Markdown table."""
    lines = [
        f"cold `envbuild image --variant {variant}`, warm cache, one run per row",
        "",
        "| revision | driver | seconds | scratch peak GB | left GB | image tars GB | peak / image |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.row.revision} ({r.commit[:7]}) | {r.driver} | {r.seconds:.0f} | {r.peak / GB:.2f} | "
            f"{r.left / GB:.2f} | {r.image_tars / GB:.2f} | {r.peak / r.image_tars:.2f} |"
        )
    lines += ["", *(f"- {r.row.revision}, {r.driver}: {r.digest}" for r in results)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure the rows, print the table or the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--row", action="append", type=RowSpec.parse, help="REVISION[:DRIVER], repeatable")
    parser.add_argument("--variant", default="gpu-infer", help="the variant to build (default gpu-infer)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between disk readings (default 0.2)")
    parser.add_argument("--fs-size", type=int, default=48, help="GB of the builds' own file system (default 48)")
    parser.add_argument("--in-place", dest="fs_size", action="store_const", const=0, help="build in $TMPDIR itself")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    args = parser.parse_args(argv)
    rows = args.row or [RowSpec(revision="HEAD", driver="overlay"), RowSpec(revision="HEAD", driver="vfs")]
    for tool in ("buildah", "unshare", "mmdebstrap", "git", *(("mkfs.ext4", "mount") if args.fs_size else ())):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is not installed")
    if args.fs_size and os.geteuid() != 0:
        sys.exit("bench: a file system of its own needs root (mount); use --in-place")
    with tempfile.TemporaryDirectory(prefix="envbuild-bench-disk-") as tmp:
        scratch = Path(tmp)
        log(f"free disk where the builds run: {shutil.disk_usage(scratch).free / GB:.1f} GB")
        with workplace(scratch, args.fs_size) as where:
            warm_cache(scratch, args.variant, where)
            results = [measure(row, where, args.variant, args.interval) for row in rows]
    if args.json:
        print(json.dumps({"variant": args.variant, "rows": [r.summary() for r in results]}, indent=2))
    else:
        print(table(results, args.variant))
    return 0


if __name__ == "__main__":
    sys.exit(main())
