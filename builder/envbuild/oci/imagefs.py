"""Reading files out of an OCI image without unpacking it.

Layers are streamed in order and checked against their digests as they are
read; OCI whiteouts (``.wh.<name>``, ``.wh..wh..opq``) hide what lower layers
hold, so the result is the file system a container would see, for the few paths
asked for.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, cast

from envbuild.errors import EnvbuildError
from envbuild.oci.compress import READ_ERRORS, detect, open_layer
from envbuild.oci.layout import INDEX_TYPES, Descriptor, Layout
from envbuild.oci.ref import Digest


class ImageReadError(EnvbuildError):
    """An image's layers could not be read (corrupt, unsupported, not an image)."""


def json_blob(layout: Layout, digest: Digest, what: str) -> dict[str, Any]:
    """The blob ``digest`` of ``layout`` as a JSON object (a manifest, a config); else an :class:`ImageReadError`."""
    try:
        value = json.loads(layout.read_blob(digest))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ImageReadError(f"{layout.path}: {what} {digest} is not JSON", hint=_REWRITE) from exc
    if not isinstance(value, dict):
        raise ImageReadError(f"{layout.path}: {what} {digest} is not a JSON object", hint=_REWRITE)
    return value


def image_config(layout: Layout, manifest: Digest) -> dict[str, Any]:
    """The config document of the image whose manifest is ``manifest`` in ``layout``."""
    document = json_blob(layout, manifest, "manifest")
    return json_blob(layout, Digest.parse(document["config"]["digest"]), "config")


_REWRITE = "the layout is damaged: write it again (envbuild image, envbuild pull or skopeo copy)"


_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


def read_image_files(layout: Layout, name: str | None, paths_wanted: Callable[[str], bool]) -> dict[str, bytes]:
    """The contents of the image's regular files whose absolute path satisfies ``paths_wanted``.

    Layers are read in order as streams, each checked against its digest, and OCI whiteouts
    (``.wh.NAME`` and ``.wh..wh..opq``) hide what lower layers held, so the result is the image's
    final file system restricted to the wanted paths. Symlinks are not followed (they hide a lower
    file of the same path); hard links to a wanted path are resolved within their layer.
    """
    manifest = _manifest(layout, name)
    files: dict[str, bytes] = {}
    for raw in manifest.get("layers", []):
        layer = Descriptor.from_json(raw)
        added, hide_exact, hide_tree = _read_layer(layout, layer, paths_wanted)
        files = {
            path: data
            for path, data in files.items()
            if path not in hide_exact and not any(parent in hide_tree for parent in _parents(path))
        }
        files.update(added)
    return files


def _manifest(layout: Layout, name: str | None) -> dict[str, Any]:
    descriptor = layout.select(name)
    manifest = json_blob(layout, descriptor.digest, "manifest")
    if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
        raise ImageReadError(
            f"{descriptor.digest} is an image index, not an image",
            hint="make the SBOM of one platform's image (envbuild writes one image per variant)",
        )
    return manifest


def _read_layer(
    layout: Layout, layer: Descriptor, wanted: Callable[[str], bool]
) -> tuple[dict[str, bytes], set[str], set[str]]:
    """One layer's wanted files, the lower paths it hides, and the lower directories whose contents it hides."""
    added: dict[str, bytes] = {}
    hide_exact: set[str] = set()
    hide_tree: set[str] = set()
    links: dict[str, str] = {}  # wanted path -> hard link target in this layer
    for member, path, data in _members(layout, layer, lambda p, m: m.isfile() and wanted(p), verify=True):
        directory, base = posixpath.split(path)
        if base == _OPAQUE:
            hide_tree.add(directory)
            continue
        if base.startswith(_WHITEOUT):
            hidden = posixpath.join(directory, base[len(_WHITEOUT) :])
            hide_exact.add(hidden)
            hide_tree.add(hidden)
            continue
        hide_exact.add(path)
        added.pop(path, None)
        links.pop(path, None)
        if member.isdir():
            continue
        hide_tree.add(path)  # a file, link or device replaces a lower directory with all it held
        if data is not None:
            added[path] = data
        elif member.islnk() and wanted(path):
            links[path] = _normalize(member.linkname)
    if links:
        added.update(_resolve_links(layout, layer, links))
    return added, hide_exact, hide_tree


def _resolve_links(layout: Layout, layer: Descriptor, links: dict[str, str]) -> dict[str, bytes]:
    """The contents of hard-linked wanted files, read from their targets in a second pass over the layer."""
    wanted = set(links.values())
    targets = {
        path: data
        for _, path, data in _members(layout, layer, lambda p, m: m.isfile() and p in wanted, verify=False)
        if data is not None
    }
    missing = sorted(path for path, target in links.items() if target not in targets)
    if missing:
        raise ImageReadError(
            f"layer {layer.digest}: {', '.join(missing)} hard-link to files outside the layer",
            hint="rebuild the image; envbuild's layers keep hard links within one layer",
        )
    return {path: targets[target] for path, target in links.items()}


def _members(
    layout: Layout, layer: Descriptor, read: Callable[[str, tarfile.TarInfo], bool], *, verify: bool
) -> Iterator[tuple[tarfile.TarInfo, str, bytes | None]]:
    """Stream a layer's members: (member, absolute path, content if ``read`` wants it).

    With ``verify``, the layer's bytes are checked against its digest once the stream ends.
    """
    for member in LayerReader(layout, layer, verify=verify).members():
        if member.path == "/":
            continue
        data = None
        if member.info.isreg() and read(member.path, member.info):
            data = b"".join(member.chunks())
        yield member.info, member.path, data


_TAR_ERRORS: tuple[type[Exception], ...] = (tarfile.TarError, *READ_ERRORS)
# tarfile's stream mode reads its source in pieces of this size; the window of recent tar bytes kept
# for member headers must be larger, so that a member's header blocks are still in it when it is yielded.
_TAR_PIECE = 1 << 16
_HEADER_WINDOW = 1 << 20


@dataclass(frozen=True, kw_only=True)
class LayerMember:
    """One tar entry of a layer as it streams past; its content is readable only until the next entry."""

    info: tarfile.TarInfo
    path: str  # absolute and normalised: ``./etc/x`` is ``/etc/x``, the root entry is ``/``
    header: bytes | None  # the entry's raw header blocks (extended headers included); None if too large to keep
    _content: IO[bytes] | None = field(default=None, repr=False)
    _where: str = field(default="", repr=False)

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        """The content of a regular file in pieces of at most ``size`` bytes (nothing for other entries)."""
        if self._content is None:
            return
        try:
            while piece := self._content.read(size):
                yield piece
        except _TAR_ERRORS as exc:
            raise _unreadable(self._where, exc) from exc


class LayerReader:
    """Streams the tar entries of one layer blob (plain, gzip'ed or zstd tar) without unpacking it.

    Memory stays bounded whatever the layer's size. Once :meth:`members` has run to its end,
    ``compression``, ``diff_id`` (the digest of the uncompressed tar) and ``tar_size`` are set and,
    with ``verify``, the blob has been checked against its digest.
    """

    def __init__(self, layout: Layout, layer: Descriptor, *, verify: bool = True):
        self.layout = layout
        self.layer = layer
        self.verify = verify
        self.compression: str | None = None
        self.diff_id: str | None = None
        self.tar_size: int | None = None

    def members(self) -> Generator[LayerMember, None, None]:
        """Every entry in tar order, the root entry (``./``) included."""
        where = f"layer {self.layer.digest}"
        digest = hashlib.sha256()
        try:
            with open(self.layout.blob_path(self.layer.digest), "rb") as blob:
                packed = io.BufferedReader(_HashingReader(blob, digest.update), buffer_size=1 << 20)
                # The bytes decide, not the media type: registries and tools mislabel layers.
                self.compression = detect(packed.peek(4)[:4])
                tap = _TarTap(cast(_ReadsInto, open_layer(packed)), where)
                with tarfile.open(fileobj=tap, mode="r|", bufsize=_TAR_PIECE) as tar:
                    for info in tar:
                        content = tar.extractfile(info) if info.isreg() else None
                        header = tap.recent(info.offset, info.offset_data)
                        yield LayerMember(
                            info=info, path=_normalize(info.name), header=header, _content=content, _where=where
                        )
                # tar stops at its end marker; the digests cover every byte
                while tap.read(1 << 20):
                    pass
                while packed.read(1 << 20):
                    pass
        except FileNotFoundError as exc:
            raise ImageReadError(
                f"{self.layout.path} lacks layer {self.layer.digest}", hint="the layout is incomplete; write it again"
            ) from exc
        except _TAR_ERRORS as exc:
            raise _unreadable(where, exc) from exc
        self.diff_id = f"sha256:{tap.hasher.hexdigest()}"
        self.tar_size = tap.size
        if self.verify and f"sha256:{digest.hexdigest()}" != str(self.layer.digest):
            raise ImageReadError(
                f"{self.layout.path}: layer {self.layer.digest} is corrupt (its bytes have another digest)",
                hint="write the layout again",
            )


def _unreadable(where: str, exc: BaseException) -> ImageReadError:
    return ImageReadError(f"{where} is not a readable tar: {exc}", hint="write the layout again")


class _ReadsInto(Protocol):
    def readinto(self, buffer: Any, /) -> int: ...


class _TarTap(io.RawIOBase):
    """The uncompressed tar stream: hashed, counted, and its most recent bytes kept for member headers."""

    def __init__(self, source: _ReadsInto, where: str):
        self._source = source
        self._where = where
        self.hasher = hashlib.sha256()
        self.size = 0
        self._recent: deque[tuple[int, bytes]] = deque()
        self._recent_size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            count = self._source.readinto(buffer)
        except READ_ERRORS as exc:
            raise _unreadable(self._where, exc) from exc
        piece = bytes(memoryview(buffer)[:count])
        self.hasher.update(piece)
        self._recent.append((self.size, piece))
        self.size += count
        self._recent_size += count
        while self._recent_size - len(self._recent[0][1]) >= _HEADER_WINDOW:
            self._recent_size -= len(self._recent.popleft()[1])
        return count

    def read(self, size: int = -1, /) -> bytes:
        return super().read(size) or b""

    def recent(self, start: int, end: int) -> bytes | None:
        """The stream's bytes ``[start, end)`` if they are still in the window."""
        if not self._recent or start < self._recent[0][0] or end > self.size:
            return None
        pieces = [(at, piece) for at, piece in self._recent if at + len(piece) > start and at < end]
        if not pieces:
            return b""
        first = pieces[0][0]
        return b"".join(piece for _, piece in pieces)[start - first : end - first]


class _HashingReader(io.RawIOBase):
    """A readable stream that passes every byte it reads to ``update`` (a hash's)."""

    def __init__(self, source: io.BufferedReader, update: Callable[[memoryview], object]):
        self._source = source
        self._update = update

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._source.readinto(buffer)
        self._update(memoryview(buffer)[:count])
        return count


def _normalize(name: str) -> str:
    """A tar member name as an absolute path: ``./etc/x``, ``etc/x`` and ``/etc/x`` are all ``/etc/x``."""
    return posixpath.normpath("/" + name.lstrip("/"))


def _parents(path: str) -> Iterator[str]:
    while path != "/":
        path = posixpath.dirname(path)
        yield path
