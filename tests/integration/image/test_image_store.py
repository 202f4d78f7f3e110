"""Losing nothing: the final image on a full disk, broken layouts, and the leftovers of killed runs.

A real disk-full comes from a small tmpfs mounted (as root) over the project's ``.envbuild/images``;
layouts are written by :func:`support.layouts.make_layout`, checked with hashlib alone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from envbuild.errors import EnvbuildError
from envbuild.image import build as image
from envbuild.lock.lockfile import ImageBase
from envbuild.oci.layout import Layout
from envbuild.oci.ref import ImageRef
from envbuild.registry.client import RegistryClient
from envbuild.registry.options import RegistryOptions
from envbuild.registry.transfer import push_layout
from envbuild.workspace import Workspace
from support.demo import built, cli_process
from support.layouts import TestLayout, index_digest, make_layout, verify_blobs
from support.registry import Registry
from support.tools import require_tool, unavailable

MiB = 1024 * 1024
KEY = "0" * 64


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[Path, int], Path]]:
    """Mount tmpfs file systems of a given size (as root); all unmounted after the test."""
    if os.geteuid() != 0:
        unavailable("mounting a tmpfs needs root")
    mount, umount = require_tool("mount"), require_tool("umount")
    mounted: list[Path] = []

    def mount_at(path: Path, size: int) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
        mounted.append(path)
        return path

    try:
        yield mount_at
    finally:
        for path in reversed(mounted):
            subprocess.run([umount, str(path)], check=True)


def built_image(out: Path, *, layer_size: int, seed: str) -> TestLayout:
    """A layout as ``envbuild image`` leaves it: the image plus its build key."""
    layout = make_layout(out, layer_size=layer_size, seed=seed)
    (out / "build-key").write_text(KEY + "\n", encoding="utf-8")
    return layout


def test_disk_full_while_replacing_keeps_the_previous_image(
    small_disk: Callable[[Path, int], Path], tmp_path: Path
) -> None:
    images = small_disk(tmp_path / "project" / ".envbuild" / "images", 4 * MiB)
    out = images / "cpu-infer"
    old = built_image(out, layer_size=MiB + MiB // 2, seed="old")
    too_big = built_image(tmp_path / "work" / "big" / "image", layer_size=3 * MiB, seed="too-big")

    with pytest.raises(EnvbuildError) as failed:
        image._replace(too_big.path, out)
    assert "no space left" in failed.value.message.lower() and failed.value.hint
    # The previous image, complete, at the final path; nothing else left on the small disk.
    assert index_digest(out) == old.digest and set(verify_blobs(out)) == {old.digest, *old.blobs}
    assert sorted(p.name for p in images.iterdir()) == ["cpu-infer"]
    assert image._cached(out, KEY) is not None and str(image._cached(out, KEY)) == old.digest

    # The next run, with room for the new image: it replaces the old one, and only it remains.
    new = built_image(tmp_path / "work" / "small" / "image", layer_size=MiB, seed="new")
    image._replace(new.path, out)
    assert index_digest(out) == new.digest and set(verify_blobs(out)) == {new.digest, *new.blobs}
    assert sorted(p.name for p in images.iterdir()) == ["cpu-infer"]


def test_replace_on_the_same_file_system_is_a_swap(tmp_path: Path) -> None:
    out = tmp_path / "images" / "cpu-infer"
    built_image(out, layer_size=1024, seed="old")
    staged = built_image(tmp_path / "work" / "image", layer_size=1024, seed="new")
    inode = os.stat(staged.blob_path(staged.layers[0])).st_ino
    image._replace(staged.path, out)
    # Renamed, not copied: the blob is the very file the build wrote.
    assert os.stat(out / "blobs" / "sha256" / staged.layers[0].removeprefix("sha256:")).st_ino == inode
    assert index_digest(out) == staged.digest
    assert sorted(p.name for p in out.parent.iterdir()) == ["cpu-infer"] and not staged.path.exists()


def test_replace_where_renames_cannot_exchange(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system without RENAME_EXCHANGE: two renames through ``<variant>.old``, which is gone after."""
    from envbuild.image import store as imagestore

    monkeypatch.setattr(imagestore, "_exchange", lambda _a, _b: False)  # the kernel's answer there, on demand
    out = tmp_path / "images" / "cpu-infer"
    built_image(out, layer_size=1024, seed="old")
    staged = built_image(tmp_path / "work" / "image", layer_size=1024, seed="new")
    image._replace(staged.path, out)
    assert index_digest(out) == staged.digest and set(verify_blobs(out)) == {staged.digest, *staged.blobs}
    assert sorted(p.name for p in out.parent.iterdir()) == ["cpu-infer"]


def _empty_index(layout: TestLayout) -> None:
    (layout.path / "index.json").write_bytes(b"")


def _truncated_layer(layout: TestLayout) -> None:
    path = layout.blob_path(layout.layers[0])
    path.write_bytes(path.read_bytes()[:100])


def _corrupt_layer(layout: TestLayout) -> None:
    path = layout.blob_path(layout.layers[0])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    path.write_bytes(bytes(data))


def _missing_config(layout: TestLayout) -> None:
    layout.blob_path(layout.config).unlink()


def test_a_damaged_record_of_hashed_files_means_hashing_again(tmp_path: Path) -> None:
    out = tmp_path / "images" / "cpu-infer"
    layout = built_image(out, layer_size=1024, seed="record")
    (out / ".verified.json").write_text("[1, 2]", encoding="utf-8")
    assert str(image._cached(out, KEY)) == layout.digest
    _corrupt_layer(layout)
    (out / ".verified.json").write_text("[1, 2]", encoding="utf-8")
    assert image._cached(out, KEY) is None


@pytest.mark.parametrize("damage", [_empty_index, _truncated_layer, _corrupt_layer, _missing_config])
def test_a_broken_image_is_not_a_cache_hit(
    damage: Callable[[TestLayout], None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "images" / "cpu-infer"
    layout = built_image(out, layer_size=64 * 1024, seed="broken")
    assert str(image._cached(out, KEY)) == layout.digest  # sound, and checked once in full
    damage(layout)
    with caplog.at_level(logging.WARNING):
        assert image._cached(out, KEY) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "rebuild" in warnings[0], warnings


def test_a_whole_image_on_a_read_only_disk_is_a_cache_hit(tmp_path: Path) -> None:
    """The check's record of hashed files cannot be saved there: the image is checked, and trusted."""
    if os.geteuid() != 0:
        unavailable("a read-only bind mount needs root")
    mount, umount = require_tool("mount"), require_tool("umount")
    out = tmp_path / "images" / "cpu-infer"
    layout = built_image(out, layer_size=1024, seed="read-only")
    images = str(out.parent)
    subprocess.run([mount, "--bind", images, images], check=True)
    try:
        subprocess.run([mount, "-o", "remount,bind,ro", images, images], check=True)
        assert str(image._cached(out, KEY)) == layout.digest
    finally:
        subprocess.run([umount, images], check=True)


def test_a_complete_old_image_is_put_back(tmp_path: Path) -> None:
    """Killed between the renames, or a disk-full copy from an older envbuild: ``<variant>.old`` is the image."""
    out = tmp_path / "images" / "cpu-infer"
    old = built_image(out.with_name("cpu-infer.old"), layer_size=1024, seed="old")
    half = built_image(out, layer_size=1024, seed="half")
    (half.path / "index.json").write_bytes(b"")
    assert str(image._cached(out, KEY)) == old.digest
    assert index_digest(out) == old.digest and sorted(p.name for p in out.parent.iterdir()) == ["cpu-infer"]


# -- the leftovers of killed runs -------------------------------------------------------------

HOLD = """
import os, signal, sys
from pathlib import Path
from envbuild.scratch import scratch_dir
with scratch_dir(Path(sys.argv[1]), "cpu-infer-") as work, scratch_dir(None, "envbuild-lock-") as tmp:
    (work / "storage").mkdir()
    (work / "storage" / "layer.tar").write_bytes(b"x" * 4096)
    print(work, tmp, flush=True)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.read()  # held until the test closes stdin
"""


def hold_scratch(work_root: Path, how: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], Path, Path]:
    """A process with a work dir and a temporary dir of its own, killed (``how="kill"``) or still running."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(work_root), how],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    work, tmp = process.stdout.readline().split()
    if how == "kill":
        assert process.wait(timeout=30) == -signal.SIGKILL
    return process, Path(work), Path(tmp)


def test_leftovers_of_killed_runs_are_removed_and_live_ones_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from envbuild.image.store import clean_leftovers

    root = tmp_path / "project"
    work_root = root / ".envbuild" / "work"
    work_root.mkdir(parents=True)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    ours = tmpdir / "envbuild-checkout"  # a user's own directory with a name like ours: never touched
    ours.mkdir()
    dead, dead_work, dead_tmp = hold_scratch(work_root, "kill", env)
    # The buildah adapter's base link (named after its process) of the killed run, and of this one.
    dead_link, live_link = tmpdir / f"envbuild-base-{dead.pid}-1", tmpdir / f"envbuild-base-{os.getpid()}-1"
    for link in (dead_link, live_link):
        link.symlink_to(tmp_path)
    live, live_work, live_tmp = hold_scratch(work_root, "hold", env)
    try:
        assert dead_work.parent == work_root and dead_tmp.parent == tmpdir and dead_work.is_dir()
        clean_leftovers(Workspace.at(root, cache=tmp_path / "cache"))
        assert not dead_work.exists() and not dead_tmp.exists() and not dead_link.is_symlink()
        assert live_link.is_symlink()
        assert live_work.is_dir() and (live_work / "storage" / "layer.tar").is_file() and live_tmp.is_dir()
        assert ours.is_dir()
    finally:
        assert live.stdin is not None
        live.stdin.close()
        assert live.wait(timeout=30) == 0
    assert not live_work.exists() and not live_tmp.exists()  # gone with the run that owned them


@pytest.mark.network
@pytest.mark.slow
def test_the_next_run_cleans_up_and_keeps_the_image(demo_image: tuple[Path, str], demo_cache: Path) -> None:
    """On the demo project: a killed run's work dir and an old image's leftover go; the image stays a cache hit."""
    project, digest = demo_image
    leftover = project / ".envbuild" / "work" / "cpu-infer-killed"
    (leftover / "storage").mkdir(parents=True)
    os.utime(leftover, (0, 0))  # from before this run started, and no process holds it
    stale = project / ".envbuild" / "images" / "cpu-infer.old"
    make_layout(stale, seed="stale")
    again = built(cli_process(project, demo_cache, "image", "--variant", "cpu-infer"))["cpu-infer"]
    assert again["digest"] == digest and again["cached"] is True
    assert not leftover.exists() and not stale.exists()
    assert json.loads((project / ".envbuild" / "images" / "cpu-infer" / "index.json").read_text())["manifests"]


@pytest.mark.registry
def test_a_pull_of_the_base_killed_half_way_is_finished_by_the_next_run(
    shared_registry: Registry, tmp_path: Path
) -> None:
    """The registry base's cache: a killed pull leaves index.json without the image; the next build pulls again."""
    source = make_layout(tmp_path / "base", layer_size=64 * 1024, layers=2, seed="killed-base-pull")
    ref = ImageRef.parse(f"{shared_registry.host}/killed-pull/python:3.11")
    pushed = push_layout(Layout.open(source.path), ref, RegistryClient(ref.registry, RegistryOptions(insecure=True)))
    killed = Layout.create(tmp_path / "cache" / "pulled" / pushed.digest.hex)  # as pull_image starts
    shutil.copy(source.blob_path(source.layers[0]), killed.path / "blobs" / "sha256")  # one blob made it

    pinned = ImageBase(ref=str(ref), digest=str(pushed.digest))
    base, _name = image.base_image(
        # Of the spec, the lock and the target, what base_image reads.
        SimpleNamespace(name="demo"),
        SimpleNamespace(bases={"cpu": pinned}),
        SimpleNamespace(variant=SimpleNamespace(accelerator="cpu"), platform="linux/amd64"),
        image.ImageOptions(
            registry=RegistryOptions(insecure=True), workspace=Workspace(root=tmp_path, cache=tmp_path / "cache")
        ),
    )
    assert base.select().digest == pushed.digest
    assert set(verify_blobs(base.path)) == {source.digest, *source.blobs}
