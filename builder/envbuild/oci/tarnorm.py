"""Layer tars in canonical form: the same files always give the same bytes.

Whatever wrote a layer (buildah, BuildKit, mmdebstrap), :func:`normalize_layer`
rewrites it: entries sorted by name, uid/gid 0 with empty owner names, mtimes
clamped to SOURCE_DATE_EPOCH, GNU format (no PAX headers carrying times or pids),
hard links pointing at the first name of their group, compressed by one pinned
compressor (:data:`envbuild.oci.compress.GZIP` unless told otherwise: gzip with
header mtime 0 and no file name, on all cores, its bytes independent of their number).
"""

from __future__ import annotations

import hashlib
import posixpath
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from envbuild.oci.compress import GZIP, Compression, Writable, open_layer

COMPRESSOR = GZIP.description
# Files a container runtime provides at run time by bind-mounting its own over them. A builder
# running a RUN step does the same, and leaves an empty file behind where the image had none
# (buildah: /etc/hosts, /etc/resolv.conf, /etc/hostname), or a whiteout of it.
RUNTIME_FILES = frozenset({"/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/run/.containerenv"})
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


@dataclass(frozen=True, kw_only=True)
class Layer:
    """A written layer blob: its compressed digest and size, and its uncompressed diff_id."""

    digest: str
    size: int
    diff_id: str
    path: Path


class HashingWriter:
    """A write-only file that hashes and counts what passes through it into ``target`` (None: nowhere).

    It has tell(), which tarfile's "w" mode asks for.
    """

    def __init__(self, target: Writable | None = None):
        self.target = target
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        if self.target is not None:
            self.target.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        if self.target is not None:
            self.target.flush()


def normalize_layer(
    source: Path,
    blobs: Path,
    *,
    epoch: int,
    compressed: bool = True,
    keep_owners: bool = False,
    drop_mount_stubs: bool = False,
    compression: Compression = GZIP,
    threads: int | None = None,
) -> Layer:
    """Rewrite the layer tar at ``source`` (compressed when ``compressed``) canonically into ``blobs``.

    New layers get uid/gid 0; a base root file system (``keep_owners``) keeps its
    numeric owners (root:shadow on /etc/shadow matters), never the names. A layer a
    builder wrote (``drop_mount_stubs``) loses what its RUN steps' mounts left behind
    (see :func:`is_mount_stub`). The blob is written with ``compression`` on ``threads``
    threads (default: all cores); a compressed source may be gzip or zstd.
    """
    with tempfile.TemporaryDirectory(dir=blobs) as tmp:
        plain = Path(tmp) / "layer.tar"
        if compressed:
            with source.open("rb") as packed, open_layer(packed) as src, plain.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        else:
            plain = source
        out = Path(tmp) / "layer.blob"
        with out.open("wb") as raw:
            compressed_out = HashingWriter(raw)
            with compression.writer(compressed_out, threads=threads) as packing:
                uncompressed = HashingWriter(packing)
                _rewrite(plain, uncompressed, epoch, keep_owners, drop_mount_stubs)
        digest = compressed_out.hasher.hexdigest()
        final = blobs / digest
        out.replace(final)
    return Layer(
        digest=f"sha256:{digest}",
        size=compressed_out.size,
        diff_id=f"sha256:{uncompressed.hasher.hexdigest()}",
        path=final,
    )


def is_mount_stub(member: tarfile.TarInfo) -> bool:
    """Whether ``member`` is what a builder's mount of a runtime file left in a layer.

    That is an empty file, or a whiteout, at one of :data:`RUNTIME_FILES`: the image holds
    the builder's mount point, not a file of its own, and a whiteout would hide the file the
    base has. A file with content there was put by the Dockerfile (a COPY) and stays.
    """
    path = posixpath.normpath("/" + member.name.lstrip("/"))
    directory, name = posixpath.split(path)
    if name.startswith(_WHITEOUT) and name != _OPAQUE:
        return posixpath.join(directory, name[len(_WHITEOUT) :]) in RUNTIME_FILES and member.isreg()
    return path in RUNTIME_FILES and member.isreg() and member.size == 0


def _rewrite(plain: Path, out: HashingWriter, epoch: int, keep_owners: bool, drop_mount_stubs: bool) -> None:
    with tarfile.open(plain, "r:") as src:
        members = src.getmembers()
        if drop_mount_stubs:
            linked = {m.linkname for m in members if m.islnk()}
            members = [m for m in members if not (is_mount_stub(m) and m.name not in linked)]
        by_name = {m.name: m for m in members}
        # Hard-link groups: the data goes with the first name in sorted order, the rest link to it.
        groups: dict[str, list[str]] = {}
        for m in members:
            if m.islnk():
                groups.setdefault(m.linkname, [m.linkname]).append(m.name)
        first_of: dict[str, str] = {}
        for names in groups.values():
            ordered = sorted(set(names))
            for name in ordered:
                first_of[name] = ordered[0]
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT) as dst:  # type: ignore[call-overload]
            for name in sorted(by_name):
                member = by_name[name]
                info = canonical_header(member, epoch, keep_owners)
                head = first_of.get(name)
                if head is not None and head != name:
                    info.type, info.linkname, info.size = tarfile.LNKTYPE, head, 0
                    dst.addfile(info)
                elif head is not None:  # this name carries the group's data
                    data_member = by_name[member.linkname] if member.islnk() else member
                    info.type, info.linkname, info.size = tarfile.REGTYPE, "", data_member.size
                    dst.addfile(info, src.extractfile(data_member))
                elif member.isreg():
                    dst.addfile(info, src.extractfile(member))
                else:
                    dst.addfile(info)


def canonical_header(member: tarfile.TarInfo, epoch: int, keep_owners: bool = False) -> tarfile.TarInfo:
    """``member``'s header as envbuild writes it: no owner names, the mtime clamped to ``epoch``.

    New layers (not ``keep_owners``) also get uid/gid 0 and modes reduced to "executable or not".
    """
    info = tarfile.TarInfo(member.name)
    info.type = member.type
    if keep_owners:
        info.mode = member.mode
    else:  # new layers: the host's umask must not show, so only "executable or not" survives
        executable = member.isdir() or member.mode & 0o111
        info.mode = 0o777 if member.issym() else 0o755 if executable else 0o644
    info.size = member.size if member.isreg() else 0
    info.linkname = member.linkname
    info.uid, info.gid = (member.uid, member.gid) if keep_owners else (0, 0)
    info.uname = info.gname = ""
    info.mtime = min(int(member.mtime), epoch)
    info.devmajor, info.devminor = member.devmajor, member.devminor
    return info
