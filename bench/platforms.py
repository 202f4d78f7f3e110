"""Benchmark building the demo's cpu-infer image for linux/arm64 from this amd64 machine, next to linux/amd64.

Run from the repository root, as root, after registering qemu for arm64 binaries::

    apt-get install qemu-user-static binfmt-support arch-test   # arch-test: mmdebstrap for a foreign arch
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc   # where it is not mounted
    update-binfmts --enable qemu-aarch64
    .venv/bin/python bench/platforms.py [--runs 3] [--json]

Each row builds the same project, a ``git clone`` of this repository whose spec lists only
that platform (``platforms = ["linux/arm64"]``) and has no ``[accelerators.gpu]`` (the demo's
GPU build, onnxruntime-gpu, has no aarch64 wheels). The clone is locked and committed, then
built by ``envbuild image --variant cpu-infer`` as it is today:

- ``linux/amd64``: native.
- ``linux/arm64 (emulated)``: the same command. mmdebstrap builds the arm64 base and
  buildah runs the Dockerfile's RUN steps (uv installing the wheels, compiling bytecode)
  through qemu-user-static, which binfmt_misc hands every aarch64 executable to; the image
  checks run the image's own (arm64) Python the same way.

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
PLATFORMS = ("linux/amd64", "linux/arm64")
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
    first: float = 0.0
    times: list[float] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    architecture: str = ""
    printed: str = ""

    @property
    def name(self) -> str:
        return self.platform if self.platform == "linux/amd64" else f"{self.platform} (emulated)"

    @property
    def reproducible(self) -> bool:
        return len(set(self.digests)) == 1

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name, "platform": self.platform, "first_build_with_base": self.first,
            "median": statistics.median(self.times), "min": min(self.times), "max": max(self.times),
            "times": self.times, "digests": self.digests, "reproducible": self.reproducible,
            "architecture": self.architecture, "entrypoint_printed": self.printed,
        }  # fmt: skip


def project_for(platform: str, work: Path) -> Path:
    """A clone of this repository whose spec builds ``platform`` only, CPU variants only, locked and committed."""
    root = copy_repo(work / platform.replace("/", "-"))
    spec = root / "envbuild.toml"
    text = spec.read_text(encoding="utf-8")
    text, count = re.subn(r"^platforms = .*$", f'platforms = ["{platform}"]', text, flags=re.M)
    text, gpu = GPU_TABLE.subn("", text)
    if (count, gpu) != (1, 1):
        sys.exit("bench: envbuild.toml has no platforms line or no [accelerators.gpu] to change")
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


def measure(platform: str, runs: int, work: Path) -> Row:
    row = Row(platform=platform)
    root = project_for(platform, work)
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
    amd, arm = rows[0], rows[-1]
    if amd is not arm:
        ratio = statistics.median(arm.times) / statistics.median(amd.times)
        lines.append(f"arm64 under emulation / amd64 native (medians): {ratio:.1f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="timed clean builds per platform (default 3)")
    parser.add_argument("--platform", action="append", choices=PLATFORMS, help="one platform only (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    for tool in ("buildah", "mmdebstrap", "umoci", "git", "chroot"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is not installed (.ci/run installs it)")
    platforms = tuple(args.platform or PLATFORMS)
    if "linux/arm64" in platforms and "enabled" not in (BINFMT.read_text() if BINFMT.exists() else ""):
        sys.exit(f"bench: {BINFMT} is not registered and enabled: see this script's docstring")
    with tempfile.TemporaryDirectory(prefix="envbuild-bench-platforms-") as tmp:
        rows = [measure(platform, args.runs, Path(tmp)) for platform in platforms]
    if args.json:
        print(json.dumps({"runs": args.runs, "rows": [r.summary() for r in rows]}, indent=2))
    else:
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
