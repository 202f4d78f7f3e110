"""The scratch-space estimate: wheels' installed sizes from their central directories, a base's unpacked size."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import pytest

from envbuild.image import disk
from envbuild.image.disk import BASE_FACTOR, WHEEL_FACTOR, DiskEstimate, DiskSpaceError
from envbuild.oci.layout import Layout
from support.layouts import make_layout


def wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_installed_size_is_the_sum_of_the_members_not_the_file(tmp_path: Path) -> None:
    made = wheel(tmp_path / "pkg-1.0-py3-none-any.whl", {"pkg/a.py": b"a" * 100_000, "pkg/b.bin": b"\0" * 50_000})
    assert disk.installed_size(made) == 150_000
    assert made.stat().st_size < 10_000  # what a sum of file sizes would have counted


def test_unpacked_size_of_a_base_reads_each_gzip_layer_trailer(tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "base", layer_size=300_000, layers=2, compresslevel=6)
    blobs = layout.path / "blobs" / "sha256"
    expected = sum(len(gzip.decompress((blobs / digest.split(":")[1]).read_bytes())) for digest in layout.layers)
    assert disk.unpacked_size(Layout.open(layout.path)) == expected


def test_the_estimate_is_the_measured_factors_times_wheels_and_base(tmp_path: Path) -> None:
    wheels = [wheel(tmp_path / f"p{i}-1.0-py3-none-any.whl", {f"p{i}/x": b"x" * 1_000_000}) for i in range(3)]
    layout = make_layout(tmp_path / "base", layer_size=500_000)
    base = disk.unpacked_size(Layout.open(layout.path))
    need = disk.estimate(wheels, Layout.open(layout.path))
    assert (need.wheels, need.base) == (3_000_000, base)
    assert need.needed == pytest.approx(WHEEL_FACTOR * 3_000_000 + BASE_FACTOR * base, abs=1)
    assert "of installed wheels" in need.describe() and "of base" in need.describe()


def test_check_space_passes_when_the_file_system_has_room_and_names_everything_when_not(tmp_path: Path) -> None:
    disk.check_space(DiskEstimate(wheels=1, base=1, needed=1024), tmp_path, variant="cpu-infer")
    free = disk.free_space(tmp_path)
    with pytest.raises(DiskSpaceError) as refused:
        disk.check_space(DiskEstimate(wheels=free, base=0, needed=free * 5), tmp_path, variant="gpu-train")
    message, hint = refused.value.message, refused.value.hint or ""
    assert message.startswith("gpu-train: the build needs about ") and str(tmp_path) in message and "free" in message
    assert "--no-disk-check" in hint and "ENVBUILD_DISK_CHECK=0" in hint and "docs/disk.md" in hint
    assert refused.value.exit_code == 1
