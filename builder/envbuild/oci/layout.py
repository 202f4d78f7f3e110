"""OCI image layouts on disk (image-spec ``image-layout.md``): read, verify and write."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envbuild.errors import UsageError
from envbuild.fsutil import atomic_write, cannot_write
from envbuild.oci.ref import Digest

REF_NAME = "org.opencontainers.image.ref.name"
INDEX_TYPES = {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
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


@dataclass(frozen=True, kw_only=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: Digest
    size: int
    annotations: tuple[tuple[str, str], ...] = ()
    artifact_type: str | None = None
    platform: str | None = None  # an index entry's "os/architecture[/variant]", e.g. linux/arm64/v8

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
            media_type=media_type,
            digest=Digest.parse(digest),
            size=size,
            annotations=tuple(sorted(annotations.items())),
            artifact_type=artifact_type,
            platform=_platform(value.get("platform")),
        )

    def to_json(self) -> dict[str, Any]:
        """The descriptor object, keys in spec order."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = platform_json(self.platform)
        return out


def platform_json(platform: str) -> dict[str, str]:
    """The OCI platform object of ``os/architecture[/variant]``."""
    parts = platform.split("/")
    out = {"architecture": parts[1], "os": parts[0]}
    if len(parts) > 2:
        out["variant"] = parts[2]
    return out


def _platform(value: Any) -> str | None:
    """An index entry's platform object as ``os/architecture[/variant]``; None when absent or not one.

    Other tools' indexes are read as they are: a platform object without a plain os and
    architecture (both REQUIRED by the image spec) names no platform, rather than failing the read.
    """
    if not isinstance(value, dict):
        return None
    parts = [value.get("os"), value.get("architecture")]
    if value.get("variant") is not None:
        parts.append(value.get("variant"))
    named = [p for p in parts if isinstance(p, str) and p and "/" not in p]
    return "/".join(named) if len(named) == len(parts) else None


class Layout:
    """An OCI image layout directory."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, path: Path) -> Layout:
        """An empty layout at ``path`` (created if needed), or the layout already there.

        A non-empty directory that is not an OCI layout is refused: its files are someone else's.
        """
        if path.is_dir() and not (path / "oci-layout").is_file() and {p.name for p in path.iterdir()} - {"blobs"}:
            raise UsageError(
                f"{path} is not empty and not an OCI image layout (it has no oci-layout file)",
                hint="write into a new or empty directory, or into an existing OCI layout",
            )
        if (path / "index.json").exists():
            cls(path).manifests()  # a broken index.json is named here, not overwritten
        try:
            (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a parent that is a file, a read-only place
            raise cannot_write(path, exc) from exc
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
        """The parsed index.json; one that is missing or not an image index is a :class:`BrokenLayoutError`."""
        path = self.path / "index.json"
        try:
            value = json.loads(path.read_bytes())
        except FileNotFoundError as exc:
            raise BrokenLayoutError(f"{self.path} has no index.json") from exc
        except (OSError, ValueError) as exc:
            raise BrokenLayoutError(f"{path} is not valid JSON ({_size(path)} bytes)") from exc
        if not isinstance(value, dict) or not isinstance(value.get("manifests", []), list):
            raise BrokenLayoutError(f"{path} is not an OCI image index (no list of manifests)")
        return value

    def manifests(self) -> list[Descriptor]:
        """The top-level descriptors of index.json."""
        try:
            return [Descriptor.from_json(m) for m in self.index().get("manifests", [])]
        except (KeyError, TypeError, ValueError, AttributeError, UsageError) as exc:
            if isinstance(exc, BrokenLayoutError):
                raise
            detail = exc.message if isinstance(exc, UsageError) else "a manifest entry is not a valid descriptor"
            raise BrokenLayoutError(f"{self.path}/index.json: {detail}") from exc

    def verify(self, top: Descriptor | None = None, *, hash_blob: Callable[[Path], bool] = lambda _path: True) -> None:
        """Check the image ``top`` (default: every one listed) is whole, or raise :class:`BrokenLayoutError`.

        index.json parses; every manifest (and those an index lists) is there with its size and
        digest, and so is every config and layer blob — whose digest is checked only where
        ``hash_blob(path)`` says so (the caller may know a file is unchanged since it last hashed it).
        """
        for descriptor in self.manifests() if top is None else [top]:
            self._verify_manifest(descriptor, hash_blob)

    def _verify_manifest(self, descriptor: Descriptor, hash_blob: Callable[[Path], bool]) -> None:
        problem = self.blob_problem(descriptor)
        if problem is not None:
            raise BrokenLayoutError(f"{self.path}: {problem}")
        try:
            blobs, subs = children(json.loads(self.blob_path(descriptor.digest).read_bytes()))
        except (KeyError, TypeError, ValueError, AttributeError, UsageError) as exc:
            raise BrokenLayoutError(f"{self.path}: manifest {descriptor.digest} is not a valid manifest") from exc
        for sub in subs:
            self._verify_manifest(sub, hash_blob)
        for blob in blobs:
            problem = self.blob_problem(blob, digest=hash_blob(self.blob_path(blob.digest)))
            if problem is not None:
                raise BrokenLayoutError(f"{self.path}: {problem}")

    def blob_problem(self, descriptor: Descriptor, *, digest: bool = True) -> str | None:
        """What is wrong with the blob ``descriptor`` names (missing, its size, its digest), or None."""
        path = self.blob_path(descriptor.digest)
        try:
            size = os.stat(path).st_size
            if size != descriptor.size:
                return f"blob {descriptor.digest} has {size} bytes, its descriptor says {descriptor.size}"
            if digest:
                with path.open("rb") as f:
                    actual = hashlib.file_digest(f, "sha256").hexdigest()
                if actual != descriptor.digest.hex:
                    return f"blob {descriptor.digest} is corrupt (its bytes have digest sha256:{actual})"
        except FileNotFoundError:
            return f"blob {descriptor.digest} is missing"
        except OSError as exc:
            return f"blob {descriptor.digest} cannot be read ({exc.strerror})"
        return None

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
        if not path.is_file() or _size(path) != len(data) or path.read_bytes() != data:  # missing or corrupt
            atomic_write(path, data)
        return digest

    def add_manifest(self, descriptor: Descriptor, *, name: str | None = None) -> None:
        """Record a manifest in index.json, keeping every entry already there.

        The ref name moves to this manifest: an entry of another digest that carried it stays,
        unnamed, so its image stays listed and its blobs referenced. Writers take turns.
        """
        with self._locked():
            self._add_manifest(descriptor, name)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # index.json is replaced by rename, so the lock is on the file that stays: oci-layout.
        try:
            marker = (self.path / "oci-layout").open("rb")
        except FileNotFoundError:  # a layout written by a tool that left it out: nothing to lock on
            yield
            return
        with marker:
            fcntl.flock(marker, fcntl.LOCK_EX)
            yield

    def _add_manifest(self, descriptor: Descriptor, name: str | None) -> None:
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
            platform=descriptor.platform,
        )

        kept = []
        for m in index.get("manifests", []):
            entry_annotations = dict(m.get("annotations") or {})
            entry_name = entry_annotations.get(REF_NAME)
            if m.get("digest") == str(descriptor.digest) and entry_name in (None, name):
                continue  # this very entry, written again below
            if name and entry_name == name:
                del entry_annotations[REF_NAME]
                m = {k: v for k, v in m.items() if k != "annotations"}
                if entry_annotations:
                    m["annotations"] = entry_annotations
            kept.append(m)
        index["manifests"] = [*kept, entry.to_json()]
        atomic_write(self.path / "index.json", json.dumps(index, separators=(",", ":")))


def children(manifest: Any) -> tuple[list[Descriptor], list[Descriptor]]:
    """A manifest's (blobs, sub-manifests): config and layers for an image, manifests for an index."""
    if not isinstance(manifest, dict):
        raise DescriptorError(f"a manifest is {_kind(manifest)}, not a JSON object")
    if manifest.get("mediaType") in tuple(INDEX_TYPES) or "manifests" in manifest:  # a tuple: any value compares
        return [], [Descriptor.from_json(m) for m in _list(manifest.get("manifests", []), "manifests")]
    blobs = [Descriptor.from_json(manifest["config"])] if "config" in manifest else []
    blobs += [Descriptor.from_json(layer) for layer in _list(manifest.get("layers", []), "layers")]
    return blobs, []


def _list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise DescriptorError(f"a manifest's {key} is {_kind(value)}, not a list")
    return value


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
