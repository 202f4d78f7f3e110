"""Removing a scratch directory with something still mounted inside it, as a killed overlay build leaves it.

The mounts are real (bind mounts, as root); the directories are in the test's own tmp_path.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from envbuild.scratch import LOCK, clean, mounts_under, remove
from support.tools import require_tool, unavailable


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[list[Path]]:
    """A list to which :func:`bind_mount` adds; whatever the test left mounted is unmounted after it."""
    if os.geteuid() != 0:
        unavailable("bind mounts need root")
    mounted: list[Path] = []
    yield mounted
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def bind_mount(mounted: list[Path], source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run([require_tool("mount"), "--bind", str(source), str(target)], check=True)
    mounted.append(target)


def host_dir(tmp_path: Path) -> Path:
    """A directory outside the scratch directory, with a file that must survive its removal."""
    outside = tmp_path / "host files"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    return outside


def test_remove_unmounts_first_and_never_deletes_through_a_mount(tmp_path: Path, bind: list[Path]) -> None:
    outside = host_dir(tmp_path)
    scratch = tmp_path / "work" / "gpu-infer-x"
    (scratch / "storage" / "root").mkdir(parents=True)
    bind_mount(bind, outside, scratch / "storage" / "root" / "merged")
    bind_mount(bind, outside, scratch / "storage" / "root" / "merged")  # stacked: two unmounts needed
    bind_mount(bind, outside, scratch / "storage" / "root" / "merged" / "nested")
    assert len(mounts_under(scratch)) == 3
    remove(scratch)
    assert not scratch.exists() and mounts_under(tmp_path / "work") == []
    assert (outside / "keep.txt").read_text() == "precious"


def test_clean_removes_a_dead_runs_directory_with_its_mounts(tmp_path: Path, bind: list[Path]) -> None:
    outside = host_dir(tmp_path)
    dead = tmp_path / "work" / "cpu-infer-dead"
    dead.mkdir(parents=True)
    (dead / LOCK).touch()  # a lock file nobody holds: its run is gone
    bind_mount(bind, outside, dead / "storage" / "overlay")
    assert clean(tmp_path / "work") == [dead]
    assert not dead.exists() and (outside / "keep.txt").is_file()


def test_a_mount_point_name_with_a_space_is_read_back(tmp_path: Path, bind: list[Path]) -> None:
    outside = host_dir(tmp_path)
    point = tmp_path / "a dir" / "with\ttab"
    bind_mount(bind, outside, point)
    assert mounts_under(tmp_path / "a dir") == [point]
