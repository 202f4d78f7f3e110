"""The root file system the checks run on: the base unpacked once into the cache, the new layers over it.

Unpacking costs per file more than per byte: where these figures come from, creating a file took
0.6 ms, and the demo's Debian base (about 6,800 entries) was most of every check's time (cpu-infer:
9.0 s with the base unpacked each time, 2.8 s over the cached one; gpu-infer: 17.7 s and 8.4 s,
medians of 3). The base's tree is therefore unpacked once per base
(``<cache>/rootfs/<key>``, keyed by its layers) and reused, read-only, as the lower directory of
an overlay mount; each check unpacks only the image's new layers, into the upper directory.
Where an overlay cannot be mounted (not root, a file system without one), everything is
unpacked, as before. The mount is in this process's namespace for as long as the check runs;
:func:`envbuild.scratch.remove` unmounts it, now or after a killed run.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from envbuild.fsutil import rename_into_place
from envbuild.image.checks.rootfs import RootFS, Unpacked, unpack
from envbuild.oci.layout import Descriptor, Layout
from envbuild.proc import run, which
from envbuild.scratch import clean, remove, scratch_dir

log = logging.getLogger(__name__)
_FORMAT = "envbuild-rootfs/1"  # what a cached tree holds and how: a change unpacks the bases again


@contextlib.contextmanager
def image_root(
    layout: Layout, layers: list[Descriptor], into: Path, *, first_new: int, cache: Path | None
) -> Iterator[Unpacked]:
    """The image of ``layers`` (the first ``first_new`` its base's) at ``into``/root; all of ``into`` removed after."""
    into.mkdir(parents=True)
    try:
        merged = into / "root"
        lower = base_tree(layout, layers[:first_new], cache) if cache is not None and os.geteuid() == 0 else None
        if lower is not None and _overlay(lower, into, merged):
            tree = unpack(layout, layers[first_new:], merged, first_new=0)
        else:
            tree = unpack(layout, layers, merged, first_new=first_new)
        yield tree
    finally:
        remove(into)  # the overlay unmounted first


def base_tree(layout: Layout, layers: list[Descriptor], cache: Path) -> Path:
    """The base ``layers`` unpacked under ``cache``/rootfs, made once (atomically) and reused."""
    key = hashlib.sha256("\n".join([_FORMAT, *(str(d.digest) for d in layers)]).encode()).hexdigest()
    trees = cache / "rootfs"
    tree = trees / key
    if tree.is_dir():
        return tree
    clean(trees, ".unpacking-")  # what killed runs left
    with scratch_dir(trees, ".unpacking-") as scratch:
        unpack(layout, layers, scratch / "tree", first_new=len(layers))
        rename_into_place(scratch / "tree", tree)
    log.info("unpacked the base into %s, for the checks of every image on it", tree)
    return tree


def _overlay(lower: Path, into: Path, merged: Path) -> bool:
    """Mount an overlay of ``lower`` at ``merged``, its upper and work directories in ``into``; False if it fails."""
    upper, work = into / "upper", into / "work"
    for directory in (upper, work, merged):
        directory.mkdir()
        directory.chmod(0o755)  # the upper directory is the image's /: not the caller's umask
    paths = [str(p) for p in (lower, upper, work)]
    if any(c in p for p in paths for c in ",:\\"):
        return False  # mount(8) would read them as separators
    options = f"lowerdir={paths[0]},upperdir={paths[1]},workdir={paths[2]}"
    result = run(
        [which("mount", hint="apt-get install mount"), "-t", "overlay", "overlay", "-o", options, str(merged)],
        tool="mount", check=False, timeout=60,
    )  # fmt: skip
    if result.returncode != 0:
        log.info("no overlay for the checks (%s): unpacking the whole image", result.stderr.strip())
        return False
    return True


__all__ = ["RootFS", "base_tree", "image_root"]
