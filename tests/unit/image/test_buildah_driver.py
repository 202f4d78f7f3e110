"""Which storage driver the buildah adapter gives buildah: overlay where it works, vfs otherwise, or as forced."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest

from envbuild.errors import UsageError
from envbuild.image.builders import buildah
from envbuild.image.builders.buildah import DRIVER_VARIABLE, overlay_problem, storage_driver
from envbuild.scratch import mounts_under
from support.tools import unavailable


@pytest.mark.parametrize("forced", ["vfs", "overlay"])
def test_the_variable_forces_the_driver_without_a_probe(
    forced: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(DRIVER_VARIABLE, forced)
    monkeypatch.setattr(buildah, "overlay_problem", lambda storage: pytest.fail("probed"))
    with caplog.at_level(logging.INFO):
        assert storage_driver(tmp_path / "storage") == forced
    assert f"buildah: {forced} storage driver ({DRIVER_VARIABLE})" in caplog.text


def test_an_unknown_driver_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DRIVER_VARIABLE, "btrfs")
    with pytest.raises(UsageError) as info:
        storage_driver(tmp_path / "storage")
    assert DRIVER_VARIABLE in info.value.message and info.value.hint and "overlay, vfs" in info.value.hint


def test_without_root_it_is_vfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(DRIVER_VARIABLE, raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with caplog.at_level(logging.INFO):
        assert storage_driver(tmp_path / "storage") == "vfs"
    assert "vfs storage driver (not root" in caplog.text


def test_as_root_on_a_disk_file_system_the_probe_mounts_overlay_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        unavailable("overlay mounts need root")
    monkeypatch.delenv(DRIVER_VARIABLE, raising=False)
    storage = tmp_path / "storage"
    assert overlay_problem(storage) is None
    assert storage_driver(storage) == "overlay"
    assert list(storage.iterdir()) == [] and mounts_under(tmp_path) == []


def test_storage_on_an_overlay_file_system_is_vfs_and_it_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As in a container whose root file system is an overlay: no overlay's upper directory can be there."""
    if os.geteuid() != 0:
        unavailable("overlay mounts need root")
    monkeypatch.delenv(DRIVER_VARIABLE, raising=False)
    lower, upper, work, merged = (tmp_path / name for name in ("lower", "upper", "work", "merged"))
    for directory in (lower, upper, work, merged):
        directory.mkdir()
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], check=True)
    try:
        with caplog.at_level(logging.INFO):
            assert storage_driver(merged / "storage") == "vfs"
        assert f"vfs storage driver (no overlay mount under {merged / 'storage'}" in caplog.text
        assert mounts_under(merged) == [merged]
    finally:
        subprocess.run(["umount", str(merged)], check=True)
