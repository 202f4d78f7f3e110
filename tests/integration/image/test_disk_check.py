"""A build that would not fit in the scratch file system is refused before the builder runs.

``.envbuild/work`` is a real small file system here (a tmpfs of 64 MiB, mounted as root): the
refusal comes from its real free space, not from a mocked statvfs.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.demo import cli_process
from support.tools import require_tool, unavailable

pytestmark = [pytest.mark.network, pytest.mark.slow]


@pytest.fixture
def small_work(demo_image: tuple[Path, str]) -> Iterator[Path]:
    """The demo project's ``.envbuild/work`` on a 64 MiB tmpfs; unmounted after the test."""
    if os.geteuid() != 0:
        unavailable("mounting a tmpfs needs root")
    mount, umount = require_tool("mount"), require_tool("umount")
    work = demo_image[0] / ".envbuild" / "work"
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run([mount, "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(work)], check=True)
    try:
        yield work
    finally:
        subprocess.run([umount, str(work)], check=True)


def test_a_build_bigger_than_the_free_space_is_refused_early_and_the_image_stays(
    small_work: Path, demo_image: tuple[Path, str], demo_cache: Path
) -> None:
    project, digest = demo_image
    image = project / ".envbuild" / "images" / "cpu-infer"
    before = sorted(p.relative_to(image) for p in image.rglob("*"))
    # Another compression is another build key: the build is not "unchanged", it would run buildah.
    result = cli_process(project, demo_cache, "image", "--variant", "cpu-infer", "--compression", "zstd")
    assert result.returncode == 1, result.stderr
    err = result.stderr
    assert "error: cpu-infer: the build needs about " in err and f"scratch space in {small_work}" in err, err
    assert re.search(r"but its file system has [\d.]+ MB free", err), err
    assert "--no-disk-check" in err and "ENVBUILD_DISK_CHECK=0" in err and "Traceback" not in err
    assert "building with buildah" not in err  # refused before the builder started
    assert sorted(p.relative_to(image) for p in image.rglob("*")) == before  # the previous image, untouched

    # Switched off, the check does not stop the build: it fails later, for want of space, and says so.
    forced = cli_process(
        project, demo_cache, "image", "--variant", "cpu-infer", "--compression", "zstd",
        env={"ENVBUILD_DISK_CHECK": "0"},
    )  # fmt: skip
    assert forced.returncode == 1 and "cpu-infer: building with buildah ..." in forced.stderr, forced.stderr
    assert "the build needs about" not in forced.stderr and "Traceback" not in forced.stderr
    assert (image / "index.json").is_file() and digest in (image / "index.json").read_text()
