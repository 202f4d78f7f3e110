"""OCI image layouts for tests, written in pure Python: sizes from a kilobyte to hundreds of megabytes.

:func:`make_layout` writes layers of seeded random bytes (one file per layer, in a gzip'ed tar),
an OCI config and manifest into ``blobs/sha256`` and an ``index.json`` that names the image with
``org.opencontainers.image.ref.name``. The same arguments give the same bytes, hence the same
digests; different seeds give images that share no blob. Digests here are computed with hashlib
alone, independently of the code under test, so tests can compare the two.

:func:`make_files_layout` writes layers of given files instead, entries in the order listed, for
tests that need to know every file of an image.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import tarfile
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
_PIECE = 1024 * 1024


@dataclass(frozen=True)
class TestLayout:
    """A layout written by :func:`make_layout`: where it is and the digests of what it holds."""

    __test__ = False  # not a test class, despite the name

    path: Path
    name: str
    digest: str  # the manifest's, as index.json records it
    manifest_size: int
    config: str
    layers: tuple[str, ...]
    layer_sizes: tuple[int, ...]

    @property
    def blobs(self) -> tuple[str, ...]:
        """Every blob the manifest references: config, then layers."""
        return (self.config, *self.layers)

    def blob_path(self, digest: str) -> Path:
        """The file of blob ``digest``."""
        return self.path / "blobs" / "sha256" / digest.removeprefix("sha256:")


def make_layout(
    path: Path,
    *,
    layer_size: int = 1024,
    layers: int = 1,
    seed: int | str = 0,
    name: str = "latest",
    compresslevel: int = 0,
    architecture: str = "amd64",
) -> TestLayout:
    """Write an OCI layout with ``layers`` layers of ``layer_size`` random bytes each, drawn from ``seed``.

    ``compresslevel`` 0 writes gzip's stored blocks: random bytes do not compress anyway, and it
    keeps a 200 MB layer to about a second.
    """
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layer_digests: list[str] = []
    layer_sizes: list[int] = []
    diff_ids: list[str] = []
    for number in range(layers):
        digest, size, diff_id = _write_layer(
            blobs, layer_size, f"{seed}/{number}", f"layer-{number}.bin", compresslevel
        )
        layer_digests.append(digest)
        layer_sizes.append(size)
        diff_ids.append(diff_id)
    config = {
        "architecture": architecture,
        "os": "linux",
        "config": {"Env": [f"ENVBUILD_TEST_SEED={seed}"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"envbuild test layer {i}"} for i in range(layers)],
    }
    return _write_image(path, config=config, layers=layer_digests, sizes=layer_sizes, name=name)


FileEntry = tuple[str, bytes, int, int, int]
"""A regular file in a layer of :func:`make_files_layout`: (path, content, mode, mtime, uid)."""


def make_files_layout(
    path: Path,
    layers: Sequence[Sequence[FileEntry]],
    *,
    env: Sequence[str] = ("PATH=/usr/bin",),
    name: str = "latest",
    tar_format: int = tarfile.GNU_FORMAT,
    compresslevel: int = 6,
) -> TestLayout:
    """Write an OCI layout whose gzip'ed tar layers hold exactly the files of ``layers``, in the order given.

    Entries keep the order they are listed in (no sorting), have gid 0 and empty owner names; the
    gzip header has mtime 0, so the same arguments give the same digests.
    """
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    digests: list[str] = []
    sizes: list[int] = []
    diff_ids: list[str] = []
    for files in layers:
        plain = io.BytesIO()
        with tarfile.open(fileobj=plain, mode="w", format=tar_format) as tar:
            for name_in_tar, content, mode, mtime, uid in files:
                info = tarfile.TarInfo(name_in_tar)
                info.size, info.mode, info.mtime, info.uid, info.gid = len(content), mode, mtime, uid, 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(content))
        packed = gzip.compress(plain.getvalue(), compresslevel=compresslevel, mtime=0)
        digests.append(_write_blob(blobs, packed))
        sizes.append(len(packed))
        diff_ids.append(f"sha256:{hashlib.sha256(plain.getvalue()).hexdigest()}")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": list(env)},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"envbuild test layer {i}"} for i in range(len(layers))],
    }
    return _write_image(path, config=config, layers=digests, sizes=sizes, name=name)


def _write_image(path: Path, *, config: dict[str, Any], layers: list[str], sizes: list[int], name: str) -> TestLayout:
    """Write config, manifest, index.json and oci-layout for layer blobs already in ``path/blobs/sha256``."""
    blobs = path / "blobs" / "sha256"
    config_bytes = _json_bytes(config)
    config_digest = _write_blob(blobs, config_bytes)
    manifest = _json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": s} for d, s in zip(layers, sizes, strict=True)],
        }
    )
    manifest_digest = _write_blob(blobs, manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest),
                "annotations": {REF_NAME: name},
            }
        ],
    }
    (path / "index.json").write_bytes(_json_bytes(index))
    (path / "oci-layout").write_bytes(_json_bytes({"imageLayoutVersion": "1.0.0"}))
    return TestLayout(
        path=path,
        name=name,
        digest=manifest_digest,
        manifest_size=len(manifest),
        config=config_digest,
        layers=tuple(layers),
        layer_sizes=tuple(sizes),
    )


def index_digest(path: Path) -> str:
    """The digest of the single manifest listed in ``path/index.json``."""
    manifests = json.loads((path / "index.json").read_text(encoding="utf-8"))["manifests"]
    assert len(manifests) == 1, f"{path}/index.json lists {len(manifests)} manifests"
    return str(manifests[0]["digest"])


def verify_blobs(path: Path) -> dict[str, int]:
    """Check every file in ``path/blobs/sha256`` hashes to its name; return ``{digest: size}``.

    Any other file there (a ``.partial`` download, a temporary file) fails the check too.
    """
    found: dict[str, int] = {}
    for blob in sorted((path / "blobs" / "sha256").iterdir()):
        hasher = hashlib.sha256()
        with blob.open("rb") as f:
            while piece := f.read(_PIECE):
                hasher.update(piece)
        assert hasher.hexdigest() == blob.name, f"{blob} holds bytes with digest sha256:{hasher.hexdigest()}"
        found[f"sha256:{blob.name}"] = blob.stat().st_size
    return found


def _write_layer(blobs: Path, size: int, seed: str, member: str, compresslevel: int) -> tuple[str, int, str]:
    """Stream a one-file tar of ``size`` random bytes through gzip into a blob; (digest, size, diff_id)."""
    rng = random.Random(seed)
    info = tarfile.TarInfo(member)
    info.size, info.mode, info.mtime, info.uname, info.gname = size, 0o644, 0, "root", "root"
    diff = hashlib.sha256()
    packed = hashlib.sha256()
    # wbits 31: a gzip stream; zlib writes a fixed header (mtime 0), so the bytes depend on the seed only.
    gzip = zlib.compressobj(compresslevel, zlib.DEFLATED, 31)
    fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".layer-", suffix=".tmp")
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:

            def emit(data: bytes) -> None:
                nonlocal written
                diff.update(data)
                packed_piece = gzip.compress(data)
                packed.update(packed_piece)
                out.write(packed_piece)
                written += len(packed_piece)

            emit(info.tobuf(format=tarfile.USTAR_FORMAT))
            remaining = size
            while remaining:
                piece = rng.randbytes(min(_PIECE, remaining))
                emit(piece)
                remaining -= len(piece)
            emit(b"\0" * ((-size) % 512) + b"\0" * 1024)  # pad the member, then two end-of-archive blocks
            tail = gzip.flush()
            packed.update(tail)
            out.write(tail)
            written += len(tail)
        digest = f"sha256:{packed.hexdigest()}"
        os.replace(tmp, blobs / packed.hexdigest())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest, written, f"sha256:{diff.hexdigest()}"


def _write_blob(blobs: Path, data: bytes) -> str:
    hexdigest = hashlib.sha256(data).hexdigest()
    (blobs / hexdigest).write_bytes(data)
    return f"sha256:{hexdigest}"


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
