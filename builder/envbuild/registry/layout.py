"""OCI image layouts on disk (image-spec ``image-layout.md``): read, verify and write."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envbuild.errors import UsageError
from envbuild.fsutil import atomic_write
from envbuild.registry.ref import Digest

REF_NAME = "org.opencontainers.image.ref.name"
INDEX_TYPES = {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}


@dataclass(frozen=True, kw_only=True)
class Descriptor:
BROKEN_HINT = "the layout is incomplete or damaged (a full disk, a killed copy?): write or pull it again"


class BrokenLayoutError(UsageError):
    """An OCI layout that is incomplete or corrupt; the message names what is wrong with it."""

    def __init__(self, message: str, *, hint: str = BROKEN_HINT):
        super().__init__(message, hint=hint)


class DescriptorError(UsageError):
    """A content descriptor (in a layout, a manifest or a registry's answer) that is malformed."""

    def __init__(self, message: str):
        super().__init__(message, hint="the document holding it is damaged or was not written by an OCI tool")


def _kind(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
    """An OCI content descriptor."""

    media_type: str
    digest: Digest
    size: int
    annotations: tuple[tuple[str, str], ...] = ()
    artifact_type: str | None = None

    @classmethod
    def from_json(cls, value: Any) -> Descriptor:
        """Parse a descriptor object; a malformed one is a :class:`DescriptorError` naming the problem."""
        if not isinstance(value, dict):
            raise DescriptorError(f"a descriptor is {_kind(value)}, not a JSON object")
        media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
        annotations, artifact_type = value.get("annotations") or {}, value.get("artifactType")
        if not isinstance(media_type, str) or not isinstance(digest, str):
            raise DescriptorError(f"a descriptor lacks a string mediaType or digest: {_short(value)}")
        # bool is an int to Python, never a size; OCI sizes are int64.
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 2**63:
            raise DescriptorError(f"descriptor {digest}: size {_short(size)} is not a byte count")
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            raise DescriptorError(f"descriptor {digest}: annotations are not a map of strings")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise DescriptorError(f"descriptor {digest}: artifactType is not a string")
        return cls(
            media_type=value["mediaType"],
            digest=Digest.parse(value["digest"]),
            size=int(value["size"]),
            annotations=tuple(sorted((value.get("annotations") or {}).items())),
            artifact_type=value.get("artifactType"),
        )

    def to_json(self) -> dict[str, Any]:
        """The descriptor object, keys in spec order."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


class Layout:
    """An OCI image layout directory."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, path: Path) -> Layout:
        """An empty layout at ``path`` (created if needed)."""
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        if not (path / "oci-layout").exists():
            atomic_write(path / "oci-layout", '{"imageLayoutVersion":"1.0.0"}')
        if not (path / "index.json").exists():
            atomic_write(path / "index.json", json.dumps({"schemaVersion": 2, "manifests": []}))
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> Layout:
        """An existing layout; a directory that is not one is a usage error."""
        if not (path / "index.json").is_file() or not (path / "blobs").is_dir():
            raise UsageError(
                f"{path} is not an OCI image layout (no index.json and blobs/)",
                hint="point at a directory written by 'envbuild image' or 'skopeo copy ... oci:DIR'",
            )
        return cls(path)

    def index(self) -> dict[str, Any]:
        """The parsed index.json."""
        value: dict[str, Any] = json.loads((self.path / "index.json").read_text(encoding="utf-8"))
        return value

    def manifests(self) -> list[Descriptor]:
        """The top-level descriptors of index.json."""
        return [Descriptor.from_json(m) for m in self.index().get("manifests", [])]

    def select(self, name: str | None = None) -> Descriptor:
        """The image named ``name`` (a ref.name annotation), or the only one."""
        found = self.manifests()
        if name is not None:
            found = [d for d in found if dict(d.annotations).get(REF_NAME) == name]
        if len(found) != 1:
            names = sorted(dict(d.annotations).get(REF_NAME, str(d.digest)) for d in self.manifests())
            which = f"named {name!r}" if name else "in total"
            raise UsageError(
                f"{self.path} holds {len(found)} images {which}",
                hint=f"name one with LAYOUT:NAME; it holds: {', '.join(names) or 'nothing'}",
            )
        return found[0]

    def blob_path(self, digest: Digest) -> Path:
        """Where a blob lives (whether or not it is there)."""
        return self.path / "blobs" / "sha256" / digest.hex

    def read_blob(self, digest: Digest) -> bytes:
        """A blob's bytes, checked against its digest."""
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError as exc:
            raise UsageError(
                f"{self.path} lacks blob {digest}", hint="the layout is incomplete; write it again"
            ) from exc
        if Digest.of(data) != digest:
            raise UsageError(
                f"{self.path}: blob {digest} is corrupt (its bytes have another digest)", hint="write the layout again"
            )
        return data

    def has_blob(self, digest: Digest) -> bool:
        """Whether the blob file exists."""
        return self.blob_path(digest).is_file()

    def write_blob(self, data: bytes) -> Digest:
        """Store ``data`` as a blob; return its digest."""
        digest = Digest.of(data)
        path = self.blob_path(digest)
        if not path.exists():
            atomic_write(path, data)
        return digest

    def add_manifest(self, descriptor: Descriptor, *, name: str | None = None) -> None:
        """Record a manifest in index.json, replacing any entry with the same ref name."""
        index = self.index()
        annotations = dict(descriptor.annotations)
        if name:
            annotations[REF_NAME] = name
        entry = Descriptor(
            media_type=descriptor.media_type,
            digest=descriptor.digest,
            size=descriptor.size,
            annotations=tuple(sorted(annotations.items())),
            artifact_type=descriptor.artifact_type,
        )

        def replaced(m: dict[str, Any]) -> bool:
            entry_name = (m.get("annotations") or {}).get(REF_NAME)
            if name:  # a named entry replaces only the entry of that name
                return bool(entry_name == name)
            return m.get("digest") == str(descriptor.digest) and entry_name is None

        kept = [m for m in index.get("manifests", []) if not replaced(m)]
        index["manifests"] = [*kept, entry.to_json()]
        atomic_write(self.path / "index.json", json.dumps(index, separators=(",", ":")))


def children(manifest: dict[str, Any]) -> tuple[list[Descriptor], list[Descriptor]]:
    """A manifest's (blobs, sub-manifests): config and layers for an image, manifests for an index."""
    if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
        return [], [Descriptor.from_json(m) for m in manifest.get("manifests", [])]
    blobs = [Descriptor.from_json(manifest["config"])] if "config" in manifest else []
    blobs += [Descriptor.from_json(layer) for layer in manifest.get("layers", [])]
    return blobs, []


def blob_size(path: Path) -> int:
    """A file's size in bytes."""
    return os.stat(path).st_size
