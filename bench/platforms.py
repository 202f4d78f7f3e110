"""Benchmark building the demo's cpu-infer image for linux/arm64 from this amd64 machine, next to linux/amd64.

Run from the repository root, as root, after registering qemu for arm64 binaries::

    apt-get install qemu-user-static binfmt-support arch-test   # arch-test: mmdebstrap for a foreign arch
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc   # where it is not mounted
    update-binfmts --enable qemu-aarch64
    .venv/bin/python bench/platforms.py [--runs 3] [--row amd64 --row arm64-emulated ...] [--json]

Each row builds the same project, a ``git clone`` of this repository whose spec lists only
that platform (``platforms = ["linux/arm64"]``) and has no ``[accelerators.gpu]`` (the demo's
GPU build, onnxruntime-gpu, has no aarch64 wheels). The clone is locked and committed, then
built by ``envbuild image --variant cpu-infer`` as it is today:

- ``linux/amd64``: native.
- ``linux/arm64 (emulated)``: the same command. mmdebstrap builds the arm64 base and
  buildah runs the Dockerfile's RUN steps (uv installing the wheels, compiling bytecode)
  through qemu-user-static, which binfmt_misc hands every aarch64 executable to; the image
  checks run the image's own (arm64) Python the same way.
- ``linux/arm64 (venv on the host)``: the spec also says ``[image] venv = "host"``
  (envbuild.image.hostvenv): the host's uv installs the arm64 wheels and the host's CPython
  of the same minor version compiles them, natively; only the base, ``uv venv`` in the
  builder stage and the image checks run under emulation.

Run 0 of each row is untimed and builds the base into envbuild's cache (its time is shown
apart). The timed runs are clean builds: the previous image deleted, so the build-key cache
misses, with the bases and wheels warm in the cache (as bench/build.py's cold builds). Each
row reports the median, min and max seconds, whether every clean build (run 0 included) gave
one manifest digest, the config's architecture, and what the image's entrypoint prints when
umoci unpacks it and chroot runs it with a setosa's measurements (under emulation for
arm64). Progress goes to stderr, the table (or the JSON) to stdout; the exit status is 0
whatever the figures (it measures).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import BIN, envbuild_env, log, run, timed
from build import copy_repo
from envbuild.oci.layout import Layout
from envbuild.oci.ref import Digest

VARIANT = "cpu-infer"
# Each row: a platform, and where the venv is built ([image] venv).
ROWS = {
    "amd64": ("linux/amd64", "builder"),
    "arm64-emulated": ("linux/arm64", "builder"),
    "arm64-host-venv": ("linux/arm64", "host"),
}
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
# The demo's predict takes an iris's four measurements (cm); these are a setosa's.
MEASUREMENTS = ("5.1", "3.5", "1.4", "0.2")
# The GPU accelerator's table: up to the next table.
GPU_TABLE = re.compile(r"^\[accelerators\.gpu\]\n(?:(?!\[).*\n)*", re.M)
COMMIT_ENV = {"GIT_AUTHOR_DATE": "2026-11-02T12:00:00+00:00", "GIT_COMMITTER_DATE": "2026-11-02T12:00:00+00:00"}


@dataclass(kw_only=True)
class Row:
    """One platform: its first build (with the base), its timed clean builds, what the image is and prints."""

    platform: str
    venv: str = "builder"  # [image] venv: where the venv's packages are installed and compiled
    first: float = 0.0
    times: list[float] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    architecture: str = ""
    printed: str = ""

    @property
    def name(self) -> str:
        if self.venv == "host":
            return f"{self.platform} (venv on the host)"
        return self.platform if self.platform == "linux/amd64" else f"{self.platform} (emulated)"

    @property
    def reproducible(self) -> bool:
        return len(set(self.digests)) == 1

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name, "platform": self.platform, "venv": self.venv, "first_build_with_base": self.first,
            "median": statistics.median(self.times), "min": min(self.times), "max": max(self.times),
            "times": self.times, "digests": self.digests, "reproducible": self.reproducible,
            "architecture": self.architecture, "entrypoint_printed": self.printed,
        }  # fmt: skip


def project_for(platform: str, venv: str, work: Path) -> Path:
    """A clone of this repository whose spec builds ``platform`` only, CPU variants only, locked and committed.

    ``venv`` is its ``[image] venv``: "host" appends it to the [image] table (the spec's last).
    """
    root = copy_repo(work / f"{platform.replace('/', '-')}-{venv}")
    spec = root / "envbuild.toml"
    text = spec.read_text(encoding="utf-8")
    text, count = re.subn(r"^platforms = .*$", f'platforms = ["{platform}"]', text, flags=re.M)
    text, gpu = GPU_TABLE.subn("", text)
    if (count, gpu) != (1, 1) or not text.rstrip().split("\n[")[-1].startswith("image]"):
        sys.exit("bench: envbuild.toml has no platforms line, no [accelerators.gpu] or no last [image] to change")
    if venv == "host":
        text = text.rstrip() + '\nvenv = "host"\n'

    spec.write_text(text, encoding="utf-8")
    env = envbuild_env(work / "pycache", keep_cache=True)
    run([BIN / "envbuild", "-q", "lock"], env=env, cwd=root)
    run([BIN / "envbuild", "-q", "dockerfile"], env=env, cwd=root)
    git = ["git", "-C", str(root), "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    run([*git, "add", "-A"])
    run([*git, "commit", "-q", "-m", f"build {platform} only"], env={**env, **COMMIT_ENV})
    return root


def build(root: Path, env: dict[str, str]) -> tuple[float, str]:
    """One clean build: seconds and the manifest digest."""
    shutil.rmtree(root / ".envbuild" / "images" / VARIANT, ignore_errors=True)
    seconds, printed = timed(lambda: run([BIN / "envbuild", "-q", "image", "--variant", VARIANT], env=env, cwd=root))
    return seconds, printed.split()[-1]


def inspect(root: Path, work: Path) -> tuple[str, str]:
    """The image's architecture, and what its entrypoint prints in a chroot of the unpacked image."""
    out = root / ".envbuild" / "images" / VARIANT
    layout = Layout.open(out)
    manifest = json.loads(layout.read_blob(layout.select().digest))
    config = json.loads(layout.read_blob(Digest.parse(manifest["config"]["digest"])))
    bundle = work / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    run(["umoci", "unpack", "--image", f"{out}:iris-demo-{VARIANT}", bundle])
    process = json.loads((bundle / "config.json").read_text(encoding="utf-8"))["process"]
    rootfs = bundle / "rootfs"
    argv = " ".join([*process["args"], *MEASUREMENTS])
    script = f"cd {process['cwd']} && exec /usr/bin/env -i {' '.join(process['env'])} {argv}"
    done = subprocess.run(
        ["chroot", f"--userspec={process['user']['uid']}:{process['user']['gid']}", rootfs, "/bin/sh", "-c", script],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    shutil.rmtree(bundle, ignore_errors=True)
    printed = (done.stdout.strip() or done.stderr.strip()).splitlines()
    return str(config.get("architecture")), printed[-1] if printed else f"(exit {done.returncode}, nothing printed)"


def measure(platform: str, venv: str, runs: int, work: Path) -> Row:
    row = Row(platform=platform, venv=venv)
    root = project_for(platform, venv, work)
    env = envbuild_env(work / "pycache", keep_cache=True)
    env.pop("SOURCE_DATE_EPOCH", None)
    log(f"{row.name}: run 0 (untimed: the base into the cache)")
    row.first, digest = build(root, env)
    row.digests.append(digest)
    log(f"{row.name}: run 0: {row.first:.1f} s, {digest}")
    for n in range(1, runs + 1):
        seconds, digest = build(root, env)
        row.times.append(seconds)
        row.digests.append(digest)
        log(f"{row.name}: run {n}: {seconds:.1f} s, {digest}")
    row.architecture, row.printed = inspect(root, work)
    return row


def table(rows: list[Row]) -> str:
    width = max(len(r.name) for r in rows)
    lines = [
        f"{'row':<{width}}  {'median s':>9}  {'min':>7}  {'max':>7}  {'runs':>4}  {'run 0 s':>8}  same digest  arch"
    ]
    for r in rows:
        lines.append(
            f"{r.name:<{width}}  {statistics.median(r.times):>9.1f}  {min(r.times):>7.1f}  {max(r.times):>7.1f}"
            f"  {len(r.times):>4}  {r.first:>8.1f}  {'yes' if r.reproducible else 'NO':<11}  {r.architecture}"
        )
    lines.append("")
    lines += [f"{r.name}: {r.digests[0]}; the entrypoint printed: {r.printed}" for r in rows]
    native = next((r for r in rows if r.platform == "linux/amd64" and r.venv == "builder"), None)
    for row in rows:
        if native is not None and row is not native:
            ratio = statistics.median(row.times) / statistics.median(native.times)
            lines.append(f"{row.name} / {native.name} (medians): {ratio:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="timed clean builds per platform (default 3)")
    parser.add_argument("--row", action="append", choices=ROWS, help="one row only (repeatable); default: all")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    for tool in ("buildah", "mmdebstrap", "umoci", "git", "chroot"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is not installed (.ci/run installs it)")
    chosen = [ROWS[name] for name in args.row or ROWS]
    registered = "enabled" in (BINFMT.read_text() if BINFMT.exists() else "")
    if any(platform == "linux/arm64" for platform, _venv in chosen) and not registered:
        sys.exit(f"bench: {BINFMT} is not registered and enabled: see this script's docstring")
    with tempfile.TemporaryDirectory(prefix="envbuild-bench-platforms-") as tmp:
        rows = [measure(platform, venv, args.runs, Path(tmp)) for platform, venv in chosen]
    if args.json:
        print(json.dumps({"runs": args.runs, "rows": [r.summary() for r in rows]}, indent=2))
    else:
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
