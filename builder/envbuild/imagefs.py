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
from collections.abc import Callable, Iterator
from typing import Any

from envbuild.errors import EnvbuildError
from envbuild.registry.layout import INDEX_TYPES, Descriptor, Layout


class ImageReadError(EnvbuildError):
    """An image's layers could not be read (corrupt, unsupported, not an image)."""


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
    manifest: dict[str, Any] = json.loads(layout.read_blob(descriptor.digest))
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
    if "zstd" in layer.media_type:
        raise ImageReadError(
            f"layer {layer.digest} is zstd-compressed", hint="envbuild reads gzip and plain tar layers"
        )
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
    digest = hashlib.sha256()
    try:
        with open(layout.blob_path(layer.digest), "rb") as blob:
            reader = io.BufferedReader(_HashingReader(blob, digest.update), buffer_size=1 << 20)
            with tarfile.open(fileobj=reader, mode="r|*") as tar:
                for member in tar:
                    path = _normalize(member.name)
                    if path == "/":
                        continue
                    data = None
                    if read(path, member):
                        extracted = tar.extractfile(member)
                        data = extracted.read() if extracted is not None else None
                    yield member, path, data
            while reader.read(1 << 20):  # tar stops at its end marker; the digest covers every byte
                pass
    except FileNotFoundError as exc:
        raise ImageReadError(
            f"{layout.path} lacks layer {layer.digest}", hint="the layout is incomplete; write it again"
        ) from exc
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ImageReadError(
            f"layer {layer.digest} is not a readable tar: {exc}", hint="write the layout again"
        ) from exc
    if verify and f"sha256:{digest.hexdigest()}" != str(layer.digest):
        raise ImageReadError(
            f"{layout.path}: layer {layer.digest} is corrupt (its bytes have another digest)",
            hint="write the layout again",
        )


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
