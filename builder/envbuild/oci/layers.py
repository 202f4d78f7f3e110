"""Writing an image's new layers from a plan: what the builder made, split into layers envbuild chooses.

The builder's new layers (buildah writes one, BuildKit one per step) are read as one tree
(:class:`NewFiles`: later layers win, whiteouts of earlier new files applied). A plan
(:class:`LayerSpec` per layer, made by :mod:`envbuild.image.layerplan`) names which paths go in
which layer; :func:`write_layers` writes each one canonically: sorted, uid/gid 0 (but for the few
directories the image's user must own, named by the caller), modes reduced to "executable or not",
GNU tar, every parent directory repeated with the same metadata in every layer (so the union of
the layers is the builder's tree), and every mtime either a fixed value
(third-party layers: their bytes depend on nothing but their files) or clamped to
SOURCE_DATE_EPOCH.

Compressed layers are kept in a content-addressed cache (:class:`LayerCache`), keyed by the
uncompressed tar's digest (the diff ID), the compressor and :data:`LAYER_FORMAT`: every layer is
serialised and hashed, and only a layer never written before is compressed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from envbuild.errors import EnvbuildError
from envbuild.fsutil import link_or_copy
from envbuild.oci.annotations import LAYER
from envbuild.oci.compress import Compression, Writable, detect, open_layer
from envbuild.oci.tarnorm import HashingWriter, canonical_header, is_mount_stub
from envbuild.progress import Phase
from envbuild.words import plural

log = logging.getLogger(__name__)

# The version of how envbuild turns files into layer bytes; part of every cache key.
LAYER_FORMAT = 1
WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_COPY_BUFFER = 1 << 20


@dataclass(frozen=True, kw_only=True)
class LayerSpec:
    """One layer of a plan: the paths it holds (parents are added), its mtime rule, how it is described."""

    name: str  # dev.envbuild.layer, e.g. "python:numpy"
    paths: tuple[str, ...]
    mtime: int | None  # every entry's mtime; None: clamped to SOURCE_DATE_EPOCH
    created_by: str
    annotations: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class WrittenLayer:
    """A layer in the image: its descriptor (with annotations), its diff ID, whether it was compressed now."""

    descriptor: dict[str, Any]
    diff_id: str
    created_by: str
    compressed: bool


@dataclass(frozen=True)
class _Member:
    info: tarfile.TarInfo
    source: int  # which of the builder's new layers holds the data


class NewFiles:
    """The builder's new layers read as one tree: path (no leading '/') -> the entry that counts."""

    def __init__(self, tars: list[tarfile.TarFile]):
        self._tars = tars
        self.entries: dict[str, _Member] = {}
        for index, tar in enumerate(tars):
            self._apply(index, tar)
        linked = {m.info.linkname for m in self.entries.values() if m.info.islnk()}
        for name in [n for n, m in self.entries.items() if is_mount_stub(m.info) and n not in linked]:
            del self.entries[name]  # what the builder's mounts of runtime files left (tarnorm.is_mount_stub)

    @classmethod
    @contextlib.contextmanager
    def open(cls, layers: Iterable[Path], scratch: Path) -> Iterator[NewFiles]:
        """Read the layer blobs ``layers`` (plain, gzip or zstd tars); compressed ones are unpacked into ``scratch``."""
        with contextlib.ExitStack() as stack:
            tars = []
            for i, blob in enumerate(layers):
                plain = _plain_tar(blob, scratch / f"layer-{i}.tar")
                tars.append(stack.enter_context(tarfile.open(plain, "r:")))
            yield cls(tars)

    def _apply(self, index: int, tar: tarfile.TarFile) -> None:
        for info in tar.getmembers():
            name = _clean_name(info.name)
            if not name:
                continue  # the root directory itself: its metadata is the base's
            info.name = name
            if info.islnk():
                info.linkname = _clean_name(info.linkname)
            directory, base = posixpath.split(name)
            # A deletion hides what earlier new layers wrote there (gone now) and what the base
            # has (the whiteout stays, for the layer plan to place below every new file).
            if base == _OPAQUE:
                self._remove_below(directory)
            elif base.startswith(WHITEOUT):
                self._remove(posixpath.join(directory, base[len(WHITEOUT) :]))
            self.entries[name] = _Member(info, index)

    def _remove(self, name: str) -> None:
        self.entries.pop(name, None)
        self._remove_below(name)

    def _remove_below(self, directory: str) -> None:
        prefix = directory + "/" if directory else ""
        for name in [n for n in self.entries if n.startswith(prefix) and n != directory]:
            del self.entries[name]

    def parents(self) -> set[str]:
        """The directories that hold other entries: each layer that needs one repeats it."""
        parents: set[str] = set()
        for name in self.entries:
            parent = posixpath.dirname(name)
            while parent and parent not in parents:
                parents.add(parent)
                parent = posixpath.dirname(parent)
        return {p for p in parents if p in self.entries and self.entries[p].info.isdir()}

    def read(self, name: str) -> bytes:
        """The content of the regular file ``name``."""
        member = self.entries[name]
        data = self._tars[member.source].extractfile(member.info)
        assert data is not None
        return data.read()

    def data(self, member: _Member) -> IO[bytes]:
        stream = self._tars[member.source].extractfile(member.info)
        assert stream is not None
        return stream


def _clean_name(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _plain_tar(blob: Path, scratch: Path) -> Path:
    with blob.open("rb") as raw:
        if detect(raw.read(4)) == "none":
            return blob
    with blob.open("rb") as raw, open_layer(raw) as src, scratch.open("wb") as dst:
        shutil.copyfileobj(src, dst, _COPY_BUFFER)
    return scratch


class LayerCache:
    """Compressed layers by what determines their bytes: ``<root>/index/<key>.json`` and ``<root>/blobs/<hex>``."""

    def __init__(self, root: Path):
        self.root = root

    @staticmethod
    def key(diff_id: str, compression: Compression) -> str:
        """The cache key of a layer: its diff ID, the compressor and the layer format."""
        text = f"envbuild-layer/{LAYER_FORMAT}\n{compression.description}\n{diff_id}\n"
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> tuple[str, int, Path] | None:
        """(digest, size, blob path) of a cached layer whose blob is whole, else None."""
        try:
            entry = json.loads((self.root / "index" / f"{key}.json").read_text(encoding="utf-8"))
            digest, size = str(entry["digest"]), int(entry["size"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        blob = self.root / "blobs" / digest.removeprefix("sha256:")
        try:
            if blob.stat().st_size != size or _sha256_file(blob) != digest:
                log.warning("the cached layer %s is damaged; writing it again", digest)
                return None
        except OSError:
            return None
        return digest, size, blob

    def put(self, key: str, digest: str, size: int, blob: Path) -> None:
        """Keep ``blob`` (a hard link when it can); a cache that cannot be written only costs time."""
        try:
            target = self.root / "blobs" / digest.removeprefix("sha256:")
            target.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(blob, target)
            index = self.root / "index"
            index.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=index, delete=False, suffix=".tmp") as tmp:
                json.dump({"digest": digest, "size": size}, tmp)
            os.replace(tmp.name, index / f"{key}.json")
        except OSError as exc:
            log.warning("could not keep layer %s in the cache %s: %s", digest, self.root, exc.strerror)


@dataclass
class LayerCounts:
    """What :func:`write_layers` did: layers compressed now, and taken from the cache."""

    compressed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    tar_bytes: int = 0  # every layer's tar
    compressed_bytes: int = 0  # the blobs compressed now


def write_layers(
    files: NewFiles,
    plan: list[LayerSpec],
    blobs: Path,
    *,
    epoch: int,
    compression: Compression,
    cache: LayerCache | None,
    counts: LayerCounts | None = None,
    progress: Phase | None = None,
    owners: Mapping[str, int] | None = None,
) -> list[WrittenLayer]:
    """Write the layers of ``plan`` into the layout's ``blobs`` directory, in order.

    ``owners`` (path without a leading '/' -> uid, also the gid) names the entries that are not
    root's, such as the image user's home; the builder's owners are never kept (they depend on
    the builder), so the image's are decided here, in every layer that holds the path.
    """
    owned = dict(owners or {})
    _check_plan(files, plan)
    heads = _link_heads(files)
    layers = [(spec, _layer_entries(files, spec)) for spec in plan]
    if progress is not None:
        # Every layer's tar is read twice, to hash it and (unless the cache has it) to compress it.
        progress.add_total(2 * sum(_tar_size(entries) for _spec, entries in layers))
    written = []
    for spec, entries in layers:
        reading = _Advancing(progress)
        hasher = HashingWriter(reading)
        _serialise(files, entries, heads, spec, epoch, hasher, owned)
        reading.done()
        diff_id = f"sha256:{hasher.hasher.hexdigest()}"
        key = LayerCache.key(diff_id, compression)
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            digest, size, cached_blob = hit
            link_or_copy(cached_blob, blobs / digest.removeprefix("sha256:"))
            fresh = False
            if progress is not None:
                progress.advance(hasher.size)  # the compression it saved
        else:
            if progress is not None:
                progress.say(f"compressing {spec.name} ({hasher.size / 1e6:.0f} MB)")
            digest, size, path = _compress(
                files, entries, heads, spec, epoch, owned, compression, blobs, diff_id, progress
            )
            if cache is not None:
                cache.put(key, digest, size, path)
            fresh = True
        if progress is not None:
            progress.item()
        if counts is not None:
            (counts.compressed if fresh else counts.cached).append(spec.name)
            counts.tar_bytes += hasher.size
            counts.compressed_bytes += size if fresh else 0
        annotations = {LAYER: spec.name, **dict(spec.annotations)}
        descriptor = {"mediaType": compression.media_type, "digest": digest, "size": size, "annotations": annotations}
        written.append(
            WrittenLayer(descriptor=descriptor, diff_id=diff_id, created_by=spec.created_by, compressed=fresh)
        )
    return written


def _check_plan(files: NewFiles, plan: list[LayerSpec]) -> None:
    """Every path of the tree in exactly one layer (directories that hold others may be in several)."""
    seen: dict[str, str] = {}
    for spec in plan:
        for path in spec.paths:
            if path not in files.entries:
                raise EnvbuildError(f"layer plan: {path} is not in the built image", hint=_BUG)
            if path in seen:
                raise EnvbuildError(f"layer plan: {path} is in layers {seen[path]} and {spec.name}", hint=_BUG)
            seen[path] = spec.name
    missing = sorted(set(files.entries) - set(seen) - files.parents())
    if missing:
        raise EnvbuildError(f"layer plan: {plural(len(missing), 'path')} in no layer, e.g. {missing[0]}", hint=_BUG)


_BUG = "this is an envbuild bug; report it with the Dockerfile"


def _layer_entries(files: NewFiles, spec: LayerSpec) -> list[tuple[str, tarfile.TarInfo, _Member | None]]:
    """The layer's entries, sorted by name: its paths and every parent directory they need."""
    names: dict[str, _Member | None] = {}
    for path in spec.paths:
        names[path] = files.entries[path]
        parent = posixpath.dirname(path)
        while parent and parent not in names:
            names[parent] = files.entries.get(parent)
            parent = posixpath.dirname(parent)
    entries = []
    for name in sorted(names):
        member = names[name]
        if member is None:  # a parent the builder did not write (its base has it): a plain directory
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
        else:
            info = member.info
        entries.append((name, info, member))
    return entries


def _link_heads(files: NewFiles) -> dict[str, str]:
    """Hard links: each link's name -> the name of the regular file whose data it shares."""
    return {name: m.info.linkname for name, m in files.entries.items() if m.info.islnk()}


def _serialise(
    files: NewFiles,
    entries: list[tuple[str, tarfile.TarInfo, _Member | None]],
    heads: dict[str, str],
    spec: LayerSpec,
    epoch: int,
    out: HashingWriter,
    owners: Mapping[str, int],
) -> None:
    """Write the layer's tar into ``out``: canonical headers, hard links kept only within the layer.

    In a hard-link group the data goes with the first name of the group present in this layer
    (sorted order); a link whose group has its data in another layer becomes a regular file.
    """
    targets = set(heads.values())
    carrier: dict[str, str] = {}
    for name, _info, _member in entries:
        group = heads.get(name, name)
        if group in targets:
            carrier.setdefault(group, name)
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT, copybufsize=_COPY_BUFFER) as tar:  # type: ignore[call-overload]
        for name, info, member in entries:
            clean = canonical_header(info, epoch)
            if spec.mtime is not None:
                clean.mtime = spec.mtime
            if name in owners:
                clean.uid = clean.gid = owners[name]
            group = heads.get(name, name)
            head = carrier.get(group)
            if head is not None and head != name:
                clean.type, clean.linkname, clean.size = tarfile.LNKTYPE, head, 0
                tar.addfile(clean)
            elif head is not None or (member is not None and info.isreg()):
                data_member = files.entries.get(group)
                if data_member is None or not data_member.info.isreg():
                    raise EnvbuildError(
                        f"{name} is a hard link to {group}, which the new layers do not hold", hint=_BUG
                    )
                clean.type, clean.linkname, clean.size = tarfile.REGTYPE, "", data_member.info.size
                tar.addfile(clean, files.data(data_member))
            else:
                tar.addfile(clean)


def _compress(
    files: NewFiles,
    entries: list[tuple[str, tarfile.TarInfo, _Member | None]],
    heads: dict[str, str],
    spec: LayerSpec,
    epoch: int,
    owners: Mapping[str, int],
    compression: Compression,
    blobs: Path,
    diff_id: str,
    progress: Phase | None,
) -> tuple[str, int, Path]:
    with tempfile.NamedTemporaryFile(dir=blobs, prefix=".layer-", delete=False) as raw:
        tmp = Path(raw.name)
        try:
            packed = HashingWriter(raw)
            with compression.writer(packed) as compressing:
                reading = _Advancing(progress, compressing)
                plain = HashingWriter(reading)
                _serialise(files, entries, heads, spec, epoch, plain, owners)
                reading.done()
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    if f"sha256:{plain.hasher.hexdigest()}" != diff_id:
        tmp.unlink(missing_ok=True)
        raise EnvbuildError(f"layer {spec.name}: its bytes changed between two writes", hint=_BUG)
    digest = packed.hasher.hexdigest()
    final = blobs / digest
    tmp.replace(final)
    return f"sha256:{digest}", packed.size, final


def _tar_size(entries: list[tuple[str, tarfile.TarInfo, _Member | None]]) -> int:
    """About the size of a layer's tar: a header per entry, and each regular file's data in 512-byte blocks."""
    data = sum(-(-info.size // 512) * 512 for _name, info, _member in entries if info.isreg())
    return 512 * len(entries) + data


class _Advancing:
    """A writer that passes its bytes on to ``target`` (None: nowhere) and advances ``phase`` by their count.

    A tar is written in headers of 512 bytes: the phase hears of them a mebibyte at a time, and of
    the rest at :meth:`done`.
    """

    def __init__(self, phase: Phase | None, target: Writable | None = None):
        self.phase, self.target = phase, target
        self.pending = 0

    def write(self, data: bytes) -> int:
        if self.target is not None:
            self.target.write(data)
        self.pending += len(data)
        if self.pending >= _COPY_BUFFER:
            self.done()
        return len(data)

    def flush(self) -> None:
        if self.target is not None:
            self.target.flush()

    def done(self) -> None:
        """Report what is pending."""
        if self.phase is not None and self.pending:
            self.phase.advance(self.pending)
        self.pending = 0


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_COPY_BUFFER):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"
