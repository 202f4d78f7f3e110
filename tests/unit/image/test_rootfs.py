"""Unpacking an image's layers for the checks (envbuild.image.checks.rootfs, envbuild.image.checks.checkroot).

Layers are hand-made tars: whiteouts and opaque directories as OCI writes them, links that try
to lead out of the root, hard links, set-id bits, and gzip'ed layers beside plain ones.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from envbuild.image.checks.checkroot import base_tree, image_root
from envbuild.image.checks.rootfs import RootFS, image_path_of, unpack
from envbuild.oci.layout import Descriptor, Layout

LAYER = "application/vnd.oci.image.layer.v1.tar"
Entry = tuple[str, str, object]  # (name, kind, content or link target)


def layer(*entries: Entry, mode: int = 0o644, uid: int = 0, compress: bool = False) -> bytes:
    """A tar of ``entries``: kind "file" (bytes), "dir", "symlink" or "hardlink" (target)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, content in entries:
            info = tarfile.TarInfo(name)
            info.uid = info.gid = uid
            info.mode = 0o755 if kind == "dir" else mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(content)
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(content)
                tar.addfile(info)
            else:
                data = bytes(content) if isinstance(content, bytes) else str(content).encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    data = out.getvalue()
    return gzip.compress(data, mtime=0) if compress else data


def layout_of(path: Path, *layers: bytes) -> tuple[Layout, list[Descriptor]]:
    layout = Layout.create(path)
    descriptors = []
    for data in layers:
        digest = layout.write_blob(data)
        descriptors.append(Descriptor(media_type=LAYER, digest=digest, size=len(data)))
    return layout, descriptors


def test_layers_whiteouts_and_opaque_directories(tmp_path: Path) -> None:
    base = layer(
        ("etc/", "dir", None), ("etc/a", "file", "a"), ("etc/b", "file", "b"), ("opt/", "dir", None),
        ("opt/x/", "dir", None), ("opt/x/old", "file", "old"), ("usr/lib/libz.so.1", "file", "z"),
    )  # fmt: skip
    new = layer(
        ("etc/.wh.a", "file", ""), ("opt/x/new", "file", "new"), ("opt/x/.wh..wh..opq", "file", ""),
        ("app/main.py", "file", "print()"),
    )  # fmt: skip
    layout, layers = layout_of(tmp_path / "layout", base, new)
    tree = unpack(layout, layers, tmp_path / "root", first_new=1)
    root = tmp_path / "root"
    assert not (root / "etc/a").exists() and (root / "etc/b").read_text() == "b"
    assert sorted(os.listdir(root / "opt/x")) == ["new"]  # the opaque directory keeps what its own layer wrote
    assert tree.new_files == {"/opt/x/new", "/app/main.py"}


def test_links_cannot_lead_out_of_the_root(tmp_path: Path) -> None:
    """An absolute link is the image's path, '..' stops at the root: nothing lands outside the directory."""
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = layer(
        ("etc", "symlink", str(outside)), ("etc/passwd", "file", "pwned"),
        ("up", "symlink", "../../../../.."), ("up/escaped", "file", "pwned"),
        ("lib", "symlink", "usr/lib"), ("lib/libc.so.6", "file", "libc"),
    )  # fmt: skip
    layout, layers = layout_of(tmp_path / "layout", evil)
    tree = unpack(layout, layers, tmp_path / "root", first_new=0)
    assert list(outside.iterdir()) == [] and not (tmp_path / "escaped").exists()
    root = tmp_path / "root"
    assert (root / str(outside).lstrip("/") / "passwd").read_text() == "pwned"  # inside, at the link's image path
    assert (root / "escaped").read_text() == "pwned"
    assert (root / "usr/lib/libc.so.6").read_text() == "libc"
    assert tree.root.resolve("/lib/libc.so.6") == "/usr/lib/libc.so.6"
    assert tree.root.resolve("/up/usr/lib/libc.so.6") == "/usr/lib/libc.so.6"


def test_links_resolve_inside_the_root(tmp_path: Path) -> None:
    layout, layers = layout_of(
        tmp_path / "layout",
        layer(
            ("usr/lib/x86_64-linux-gnu/libfoo.so.1.2", "file", "foo"),
            ("usr/lib/x86_64-linux-gnu/libfoo.so.1", "symlink", "libfoo.so.1.2"),
            ("opt/lib", "symlink", "/usr/lib/x86_64-linux-gnu"),
            ("loop1", "symlink", "loop2"), ("loop2", "symlink", "loop1"),
        ),
    )  # fmt: skip
    root = unpack(layout, layers, tmp_path / "root", first_new=0).root
    assert root.resolve("/opt/lib/libfoo.so.1") == "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2"
    assert root.resolve("/loop1") is None and root.resolve("/nothing/here") is None
    assert "libfoo.so.1" in root.directory_names("/opt/lib")
    assert image_path_of("//a/./b/") == "/a/b"


def test_hard_links_modes_owners_and_compressed_layers(tmp_path: Path) -> None:
    layout, layers = layout_of(
        tmp_path / "layout",
        layer(("bin/tool", "file", "#!"), mode=0o4755, uid=10001),
        layer(("bin/again", "hardlink", "bin/tool"), ("data/x", "file", "x"), compress=True),
    )
    tree = unpack(layout, layers, tmp_path / "root", first_new=1)
    tool, again = tmp_path / "root/bin/tool", tmp_path / "root/bin/again"
    assert os.path.samefile(tool, again)
    assert tool.stat().st_mode & 0o7777 == 0o755  # the set-id bit dropped
    if os.geteuid() == 0:
        assert tool.stat().st_uid == 10001
    assert tree.new_files == {"/bin/again", "/data/x"}


def test_a_hard_link_to_nothing_is_an_error(tmp_path: Path) -> None:
    from envbuild.oci.imagefs import ImageReadError

    layout, layers = layout_of(tmp_path / "layout", layer(("a", "hardlink", "missing")))
    with pytest.raises(ImageReadError, match="hard link to missing"):
        unpack(layout, layers, tmp_path / "root", first_new=0)


def test_the_base_tree_is_unpacked_once_and_the_image_over_it(tmp_path: Path) -> None:
    base = layer(("etc/os-release", "file", "debian"), ("etc/gone", "file", "x"), ("usr/bin/python3", "file", "py"))
    new = layer(("etc/.wh.gone", "file", ""), ("opt/venv/bin/python", "symlink", "/usr/bin/python3"))
    layout, layers = layout_of(tmp_path / "layout", base, new)
    cache = tmp_path / "cache"
    first = base_tree(layout, layers[:1], cache)
    assert base_tree(layout, layers[:1], cache) == first and (first / "etc/gone").exists()
    with image_root(layout, layers, tmp_path / "work" / "check", first_new=1, cache=cache) as tree:
        assert isinstance(tree.root, RootFS)
        assert tree.root.resolve("/opt/venv/bin/python") == "/usr/bin/python3"
        assert not tree.root.host("/etc/gone").exists() and tree.root.host("/etc/os-release").read_text() == "debian"
    assert not (tmp_path / "work" / "check").exists()
    assert (first / "etc/gone").exists()  # the cached base is never written through


def test_the_umask_does_not_reach_the_image(tmp_path: Path) -> None:
    """Under umask 077 the root and the directories no tar entry names are still 0755: the image's user gets in."""
    layout, layers = layout_of(
        tmp_path / "layout",
        layer(
            (
                "opt/venv/bin/python",
                "file",
                "#!",
            ),
            mode=0o755,
        ),
    )
    old = os.umask(0o077)
    try:
        unpack(layout, layers, tmp_path / "root", first_new=0)
    finally:
        os.umask(old)
    for path in ("", "opt", "opt/venv", "opt/venv/bin"):
        assert (tmp_path / "root" / path).stat().st_mode & 0o777 == 0o755, path
    assert (tmp_path / "root/opt/venv/bin/python").stat().st_mode & 0o777 == 0o755
