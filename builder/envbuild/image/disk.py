"""Scratch space: what a build will take on the file system of ``.envbuild/work``, checked before it starts.

A build's disk peak comes at the end of the builder's run, when the venv exists several times
over: in the builder stage's container, in the final stage's, in the builder's pending blob of
the new layer and in the raw image it writes; then envbuild writes the compressed image next to
it. The venv is about the wheels unpacked, so the estimate is the wheels' installed size (the
sum of their members' sizes, from each zip's central directory: no wheel is unpacked) and the
base's unpacked size, each times a factor measured on real builds (bench/disk.py, docs/disk.md).
A build that would not fit is refused before the builder runs, not twenty minutes into it.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from envbuild.errors import EnvbuildError
from envbuild.oci.compress import detect
from envbuild.oci.layout import Layout
from envbuild.oci.ref import Digest
from envbuild.progress import size_text

# Scratch bytes per installed byte of the wheels and per unpacked byte of the base, measured with
# bench/disk.py on the demo (docs/disk.md): gpu-infer (2.55 GB of installed wheels, a 0.15 GB base)
# peaked at 10.66 GB with overlay storage and 10.99 GB with vfs, cpu-infer (0.12 GB, the same base)
# at 0.95 GB and 1.28 GB. Solved for the two factors: 4.0 per wheel byte with either driver, 3.0
# per base byte with overlay and 5.1 with vfs (which copies the root file system at every step).
# Rounded up, and vfs's for the base: the check must not let through a build that then fails.
WHEEL_FACTOR = 4.5
BASE_FACTOR = 5.5
# A gzip layer's trailer holds its size (modulo 2**32); another compressed layer counts as this many times its blob.
_UNKNOWN_RATIO = 3


class DiskSpaceError(EnvbuildError):
    """The file system a build writes its scratch files to has too little free space for it."""


@dataclass(frozen=True, kw_only=True)
class DiskEstimate:
    """The scratch space a build needs, and what it is made of (bytes)."""

    wheels: int  # the wheels, installed
    base: int  # the base image, unpacked
    needed: int

    def describe(self) -> str:
        """``about 11.8 GB (4.5 x (2.5 GB of installed wheels + 158.2 MB of base))``."""
        return (
            f"about {size_text(self.needed)} ({WHEEL_FACTOR:g} x {size_text(self.wheels)} of installed wheels "
            f"+ {BASE_FACTOR:g} x {size_text(self.base)} of base)"
        )


def installed_size(wheel: Path) -> int:
    """The bytes ``wheel`` unpacks to: the sum of its members' sizes, read from the zip's central directory."""
    with zipfile.ZipFile(wheel) as zf:
        return sum(info.file_size for info in zf.infolist())


def unpacked_size(layout: Layout) -> int:
    """The bytes of the (first) image of ``layout`` with its layers unpacked, read from their blobs' ends."""
    manifest = json.loads(layout.read_blob(layout.select().digest))
    return sum(
        _layer_size(layout.blob_path(Digest.parse(layer["digest"])), int(layer["size"]))
        for layer in manifest.get("layers", [])
    )


def _layer_size(path: Path, size: int) -> int:
    """A layer blob's unpacked size: its own size when plain, a gzip's from its trailer, else a guess."""
    with path.open("rb") as f:
        kind = detect(f.read(4))
        if kind == "none":
            return size
        if kind != "gzip" or size < 8:
            return size * _UNKNOWN_RATIO
        f.seek(-4, os.SEEK_END)
        modulo = int.from_bytes(f.read(4), "little")
    # The trailer is the size modulo 2**32: the smallest such size not below the compressed one.
    wraps = max(0, math.ceil((size - modulo) / 2**32))
    return modulo + wraps * 2**32


def estimate(wheels: Iterable[Path], base: Layout) -> DiskEstimate:
    """What a build that installs ``wheels`` on ``base`` takes in scratch space at its peak."""
    installed = sum(installed_size(w) for w in wheels)
    unpacked = unpacked_size(base)
    return DiskEstimate(
        wheels=installed, base=unpacked, needed=math.ceil(WHEEL_FACTOR * installed + BASE_FACTOR * unpacked)
    )


def free_space(directory: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding ``directory``."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def check_space(need: DiskEstimate, directory: Path, *, variant: str) -> None:
    """Refuse (:class:`DiskSpaceError`) when the file system of ``directory`` has less free space than ``need``."""
    free = free_space(directory)
    if free >= need.needed:
        return
    raise DiskSpaceError(
        f"{variant}: the build needs {need.describe()} of scratch space in {directory}, "
        f"but its file system has {size_text(free)} free",
        hint=(
            f"free {size_text(need.needed - free)} or more there (old images under .envbuild/images, other "
            "builds' files), or build on a machine with more disk; to build anyway, pass --no-disk-check "
            "(ENVBUILD_DISK_CHECK=0). See docs/disk.md"
        ),
    )
