"""Writing the final image: envbuild, not the builder, decides its bytes.

From the builder's raw output and the base, :func:`assemble` writes an OCI layout
whose base layers are the base's own blobs (byte for byte, so registries share
them), whose new layers are the builder's files split as a plan says and written
canonically (:mod:`envbuild.oci.layers`), and
whose config and manifest are canonical JSON with every time set from
SOURCE_DATE_EPOCH and no builder fingerprints.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from envbuild.errors import EnvbuildError
from envbuild.fsutil import link_or_copy
from envbuild.oci.compress import GZIP, Compression
from envbuild.oci.layers import LayerCache, LayerCounts, LayerSpec, NewFiles, write_layers
from envbuild.oci.layout import Descriptor, Layout
from envbuild.oci.ref import Digest
from envbuild.oci.tarnorm import normalize_layer
from envbuild.progress import Phase

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
# Labels builders add about themselves; they are not part of what was built.
BUILDER_LABELS = ("io.buildah.version",)


def canonical(value: Any) -> bytes:
    """Compact JSON with sorted keys: one value, one byte string."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rfc3339(epoch: int) -> str:
    """``epoch`` as the timestamp format image configs use."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def assemble(
    *,
    built: Layout,
    base: Layout,
    out: Path,
    epoch: int,
    name: str,
    plan: Callable[[NewFiles], list[LayerSpec]],
    compression: Compression = GZIP,
    cache: LayerCache | None = None,
    counts: LayerCounts | None = None,
    progress: Phase | None = None,
    owners: Mapping[str, int] | None = None,
) -> Descriptor:
    """Write the final image of ``built`` (whose first layers are ``base``'s) into the layout ``out``.

    The builder's new layers are read as one tree and written again as the layers ``plan``
    chooses (:mod:`envbuild.oci.layers`), every entry root's but those ``owners`` names; the
    builder's steps stay in the history, each marked as making no layer, followed by one entry
    per layer envbuild wrote.
    """
    base_desc = base.select()
    base_manifest = json.loads(base.read_blob(base_desc.digest))
    base_config = json.loads(base.read_blob(Digest.parse(base_manifest["config"]["digest"])))
    built_desc = built.select()
    built_manifest = json.loads(built.read_blob(built_desc.digest))
    config = json.loads(built.read_blob(Digest.parse(built_manifest["config"]["digest"])))

    base_ids = base_config["rootfs"]["diff_ids"]
    if config["rootfs"]["diff_ids"][: len(base_ids)] != base_ids:
        raise EnvbuildError(
            "the builder changed the base image's layers", hint="this is a builder bug; report it with the build log"
        )
    layout = Layout.create(out)
    blobs = out / "blobs" / "sha256"
    layers = []
    for layer in base_manifest["layers"]:
        link_or_copy(base.blob_path(Digest.parse(layer["digest"])), blobs / layer["digest"].split(":", 1)[1])
        layers.append(layer)
    new_blobs = [built.blob_path(Digest.parse(layer["digest"])) for layer in built_manifest["layers"][len(base_ids) :]]
    with (
        tempfile.TemporaryDirectory(dir=out.parent, prefix=".unpacked-") as scratch,
        NewFiles.open(new_blobs, Path(scratch)) as files,
    ):
        written = write_layers(
            files, plan(files), blobs, epoch=epoch, compression=compression, cache=cache, counts=counts,
            progress=progress, owners=owners,
        )  # fmt: skip
    layers += [w.descriptor for w in written]

    config["created"] = rfc3339(epoch)
    config["rootfs"] = {"type": "layers", "diff_ids": [*base_ids, *(w.diff_id for w in written)]}
    base_history = base_config.get("history", [])
    steps = []
    for entry in config.get("history", [])[len(base_history) :]:
        step = {k: v for k, v in entry.items() if k not in ("author", "comment")}
        # buildah writes "FROM <local name>" in comment: how the base was named, not what it is
        steps.append({**step, "created": rfc3339(epoch), "empty_layer": True})
    made = [{"created": rfc3339(epoch), "created_by": w.created_by} for w in written]
    config["history"] = [*base_history, *steps, *made]
    image_config = config.get("config")
    if image_config is not None:
        labels = {k: v for k, v in (image_config.get("Labels") or {}).items() if k not in BUILDER_LABELS}
        if labels:
            image_config["Labels"] = labels
        else:
            image_config.pop("Labels", None)
    annotations = {"org.opencontainers.image.base.digest": str(base_desc.digest)}
    return write_image(layout, config=config, layers=layers, annotations=annotations, name=name)


def write_image(
    layout: Layout, *, config: dict[str, Any], layers: list[dict[str, Any]], annotations: dict[str, str], name: str
) -> Descriptor:
    """Write ``config`` and the manifest over ``layers`` as canonical JSON, and name the image in index.json."""
    config_bytes = canonical(config)
    config_digest = layout.write_blob(config_bytes)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": str(config_digest), "size": len(config_bytes)},
        "layers": layers,
    }
    if annotations:
        manifest["annotations"] = annotations
    manifest_bytes = canonical(manifest)
    digest = layout.write_blob(manifest_bytes)
    descriptor = Descriptor(media_type=OCI_MANIFEST, digest=digest, size=len(manifest_bytes))
    layout.add_manifest(descriptor, name=name)
    return descriptor


def write_index(out: Path, images: list[tuple[Layout, Descriptor]], *, name: str) -> Descriptor:
    """Write into ``out`` one image index over ``images`` (each a layout and its image), in their order.

    Each entry's platform is its config's own os, architecture and variant, so the index says
    what each image is; blobs are hard-linked from the platforms' layouts. The index is
    canonical JSON with no annotations: the same images give the same index digest.
    """
    layout = Layout.create(out)
    entries = []
    for source, image in images:
        manifest = json.loads(source.read_blob(image.digest))
        config = json.loads(source.read_blob(Digest.parse(manifest["config"]["digest"])))
        variant = [config["variant"]] if config.get("variant") else []
        platform = "/".join([config["os"], config["architecture"], *variant])
        for blob in [image, Descriptor.from_json(manifest["config"]), *map(Descriptor.from_json, manifest["layers"])]:
            target = layout.blob_path(blob.digest)
            if not target.exists():
                link_or_copy(source.blob_path(blob.digest), target)
        entries.append(
            Descriptor(media_type=image.media_type, digest=image.digest, size=image.size, platform=platform).to_json()
        )
    index = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    descriptor = Descriptor(media_type=OCI_INDEX, digest=layout.write_blob(index), size=len(index))
    layout.add_manifest(descriptor, name=name)
    return descriptor


def write_single_layer_image(
    *,
    layer_tar: Path,
    out: Path,
    epoch: int,
    name: str,
    created_by: str,
    env: list[str],
    architecture: str,
    keep_owners: bool,
) -> Descriptor:
    """An image of one layer made from a root file system tar (used for bases envbuild builds)."""
    layout = Layout.create(out)
    written = normalize_layer(
        layer_tar, out / "blobs" / "sha256", epoch=epoch, compressed=False, keep_owners=keep_owners
    )
    config = {
        "architecture": architecture,
        "os": "linux",
        "created": rfc3339(epoch),
        "config": {"Env": env},
        "rootfs": {"type": "layers", "diff_ids": [written.diff_id]},
        "history": [{"created": rfc3339(epoch), "created_by": created_by}],
    }
    layers = [{"mediaType": OCI_LAYER_GZIP, "digest": written.digest, "size": written.size}]
    return write_image(layout, config=config, layers=layers, annotations={}, name=name)
