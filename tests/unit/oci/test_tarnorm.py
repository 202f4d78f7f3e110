"""Layer normalisation (oci/tarnorm.py) on small tars made here: the same files always give the same bytes."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from envbuild.oci.tarnorm import Layer, normalize_layer

EPOCH = 1_700_000_000


@dataclass(frozen=True)
class Entry:
    """One member of a test tar."""

    name: str
    data: bytes | None = None  # None: a directory (or a link, with ``link``)
    mode: int = 0o644
    mtime: int = EPOCH - 100
    uid: int = 1000
    gid: int = 1000
    link: str | None = None  # a hard link to this name
    symlink: str | None = None


def make_tar(path: Path, entries: list[Entry], *, compressed: bool = True) -> Path:
    """A layer tar holding ``entries`` in the order given, with owner names set (as builders leave them)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.mode, info.mtime, info.uid, info.gid = entry.mode, entry.mtime, entry.uid, entry.gid
            info.uname, info.gname = "builder", "staff"
            if entry.link is not None:
                info.type, info.linkname = tarfile.LNKTYPE, entry.link
                tar.addfile(info)
            elif entry.symlink is not None:
                info.type, info.linkname = tarfile.SYMTYPE, entry.symlink
                tar.addfile(info)
            elif entry.data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    path.write_bytes(gzip.compress(buffer.getvalue(), mtime=EPOCH) if compressed else buffer.getvalue())
    return path


def normalized(where: Path, entries: list[Entry], **options: bool) -> tuple[Layer, list[tarfile.TarInfo]]:
    """Normalise a tar of ``entries`` into ``where``/blobs; the layer and the members of its output, in order."""
    blobs = where / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    source = make_tar(where / "source.tar.gz", entries)
    layer = normalize_layer(source, blobs, epoch=EPOCH, **options)
    with tarfile.open(layer.path, "r:gz") as tar:
        return layer, tar.getmembers()


FILES = [
    Entry("usr", mode=0o700),
    Entry("usr/bin", mode=0o750),
    Entry("usr/bin/tool", b"#!/bin/sh\n", mode=0o700),
    Entry("usr/share/doc.txt", b"words\n", mode=0o600, mtime=EPOCH + 5_000),
    Entry("usr/bin/alias", symlink="tool"),
]


def test_the_blob_is_named_and_described_by_its_digests(tmp_path: Path) -> None:
    layer, _ = normalized(tmp_path, FILES)
    blob = layer.path.read_bytes()
    assert layer.path == tmp_path / "blobs" / hashlib.sha256(blob).hexdigest()
    assert layer.digest == f"sha256:{hashlib.sha256(blob).hexdigest()}" and layer.size == len(blob)
    assert layer.diff_id == f"sha256:{hashlib.sha256(gzip.decompress(blob)).hexdigest()}"
    assert blob[4:8] == b"\0\0\0\0" and not blob[3] & 0x08  # gzip header: mtime 0, no file name
    assert sorted(p.name for p in (tmp_path / "blobs").iterdir()) == [layer.path.name]  # nothing else left


def test_mtimes_are_clamped_to_the_epoch_and_older_ones_kept(tmp_path: Path) -> None:
    _, members = normalized(tmp_path, FILES)
    mtimes = {m.name: m.mtime for m in members}
    assert mtimes["usr/share/doc.txt"] == EPOCH
    assert mtimes["usr/bin/tool"] == EPOCH - 100


def test_owners_become_root_without_names_and_modes_only_say_executable(tmp_path: Path) -> None:
    _, members = normalized(tmp_path, FILES)
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    modes = {m.name: m.mode for m in members}
    assert modes == {
        "usr": 0o755,
        "usr/bin": 0o755,
        "usr/bin/alias": 0o777,
        "usr/bin/tool": 0o755,
        "usr/share/doc.txt": 0o644,
    }
    assert all(not m.pax_headers for m in members)  # GNU format: no PAX records carrying times


def test_a_base_keeps_numeric_owners_and_modes_but_not_names(tmp_path: Path) -> None:
    shadow = Entry("etc/shadow", b"root:*:1::::::\n", mode=0o640, uid=0, gid=42)
    _, members = normalized(tmp_path, [Entry("etc", mode=0o755, uid=0, gid=0), shadow], keep_owners=True)
    got = {m.name: (m.uid, m.gid, m.mode, m.uname, m.gname) for m in members}
    assert got["etc/shadow"] == (0, 42, 0o640, "", "")


def test_owners_and_mtimes_past_the_epoch_do_not_change_the_bytes(tmp_path: Path) -> None:
    first, members = normalized(tmp_path / "a", FILES)
    assert [m.name for m in members] == sorted(m.name for m in members)
    other = [Entry(e.name, e.data, mode=e.mode, mtime=e.mtime, uid=0, gid=7, symlink=e.symlink) for e in FILES]
    other[3] = Entry("usr/share/doc.txt", b"words\n", mode=0o640, mtime=EPOCH + 9_999)  # still past the epoch
    second, _ = normalized(tmp_path / "b", other)
    assert second.path.read_bytes() == first.path.read_bytes()
    older = [*FILES[:3], Entry("usr/share/doc.txt", b"words\n", mode=0o600, mtime=EPOCH - 1), FILES[4]]
    third, _ = normalized(tmp_path / "c", older)
    assert third.digest != first.digest  # an mtime before the epoch is the file's own, and kept


def test_same_content_in_another_order_gives_the_same_blob(tmp_path: Path) -> None:
    first, _ = normalized(tmp_path / "a", FILES)
    second, _ = normalized(tmp_path / "b", [*reversed(FILES)])
    assert first.path.read_bytes() == second.path.read_bytes()


def test_a_hard_link_group_carries_its_data_under_the_first_name(tmp_path: Path) -> None:
    entries = [Entry("z", mode=0o755), Entry("z/data", b"payload"), Entry("a-link", link="z/data")]
    _, members = normalized(tmp_path, entries)
    by_name = {m.name: m for m in members}
    assert [m.name for m in members] == ["a-link", "z", "z/data"]
    assert by_name["a-link"].isreg() and by_name["a-link"].size == len(b"payload")
    assert by_name["z/data"].islnk() and by_name["z/data"].linkname == "a-link" and by_name["z/data"].size == 0
    with tarfile.open(next((tmp_path / "blobs").iterdir()), "r:gz") as tar:
        data = tar.extractfile("a-link")
        assert data is not None and data.read() == b"payload"


def test_mount_stubs_go_only_when_asked_and_only_empty_ones(tmp_path: Path) -> None:
    entries = [
        Entry("etc", mode=0o755),
        Entry("etc/hosts", b""),  # what a RUN step's bind mount leaves behind
        Entry("etc/.wh.resolv.conf", b""),  # a whiteout that would hide the base's file
        Entry("etc/hostname", b"copied-by-the-dockerfile\n"),  # content: the Dockerfile put it there
    ]
    _, kept = normalized(tmp_path / "keep", entries)
    assert [m.name for m in kept] == ["etc", "etc/.wh.resolv.conf", "etc/hostname", "etc/hosts"]
    _, dropped = normalized(tmp_path / "drop", entries, drop_mount_stubs=True)
    assert [m.name for m in dropped] == ["etc", "etc/hostname"]


def test_an_uncompressed_source_gives_the_same_layer(tmp_path: Path) -> None:
    (tmp_path / "blobs").mkdir()
    plain = make_tar(tmp_path / "plain.tar", FILES, compressed=False)
    from_plain = normalize_layer(plain, tmp_path / "blobs", epoch=EPOCH, compressed=False)
    from_gzip, _ = normalized(tmp_path / "gz", FILES)
    assert (from_plain.digest, from_plain.diff_id) == (from_gzip.digest, from_gzip.diff_id)
    assert plain.is_file()  # the source is read, never moved


@pytest.mark.parametrize("epoch", [EPOCH - 1_000, EPOCH + 1_000])
def test_the_epoch_changes_the_bytes_only_through_clamped_mtimes(tmp_path: Path, epoch: int) -> None:
    (tmp_path / "blobs").mkdir()
    source = make_tar(tmp_path / "s.tar.gz", FILES)
    layer = normalize_layer(source, tmp_path / "blobs", epoch=epoch)
    with tarfile.open(layer.path, "r:gz") as tar:
        assert max(m.mtime for m in tar.getmembers()) == min(epoch, EPOCH + 5_000)
