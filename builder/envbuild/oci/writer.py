"""Writing the final image: envbuild, not the builder, decides its bytes.

From the builder's raw output and the base, :func:`assemble` writes an OCI layout
whose base layers are the base's own blobs (byte for byte, so registries share
them), whose new layers are rewritten canonically (:mod:`envbuild.oci.tarnorm`), and
whose config and manifest are canonical JSON with every time set from
SOURCE_DATE_EPOCH and no builder fingerprints.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from envbuild.errors import EnvbuildError
from envbuild.oci.layout import Descriptor, Layout
from envbuild.oci.ref import Digest
from envbuild.oci.tarnorm import normalize_layer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
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


def assemble(*, built: Layout, base: Layout, out: Path, epoch: int, name: str) -> Descriptor:
    """Write the final image of ``built`` (whose first layers are ``base``'s) into the layout ``out``."""
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
        _link(base.blob_path(Digest.parse(layer["digest"])), blobs / layer["digest"].split(":", 1)[1])
        layers.append(layer)
    new_ids = []
    for layer in built_manifest["layers"][len(base_ids) :]:
        source = built.blob_path(Digest.parse(layer["digest"]))
        # Without drop_mount_stubs, buildah's empty /etc/hosts (and resolv.conf, hostname) would
        # sit in the new layer, hiding the base's own or adding one it never had.
        written = normalize_layer(
            source, blobs, epoch=epoch, compressed=layer["mediaType"].endswith("gzip"), drop_mount_stubs=True
        )
        layers.append({"mediaType": OCI_LAYER_GZIP, "digest": written.digest, "size": written.size})
        new_ids.append(written.diff_id)

    config["created"] = rfc3339(epoch)
    config["rootfs"] = {"type": "layers", "diff_ids": [*base_ids, *new_ids]}
    base_history = base_config.get("history", [])
    steps = config.get("history", [])[len(base_history) :]
    for entry in steps:
        entry["created"] = rfc3339(epoch)
        entry.pop("author", None)
        entry.pop("comment", None)  # buildah writes "FROM <local name>" here: how the base was named, not what it is
    if "history" in config:
        config["history"] = [*base_history, *layer_history(steps, len(new_ids))]
    image_config = config.get("config")
    if image_config is not None:
        labels = {k: v for k, v in (image_config.get("Labels") or {}).items() if k not in BUILDER_LABELS}
        if labels:
            image_config["Labels"] = labels
        else:
            image_config.pop("Labels", None)
    annotations = {"org.opencontainers.image.base.digest": str(base_desc.digest)}
    return write_image(layout, config=config, layers=layers, annotations=annotations, name=name)


# Dockerfile instructions that write files; every other one changes only the config.
_FILE_STEPS = frozenset({"RUN", "COPY", "ADD"})


def step_instruction(created_by: str) -> str:
    """The Dockerfile instruction of a history entry, from the forms builders write.

    buildah and the classic docker builder: ``/bin/sh -c #(nop) COPY ...`` for everything but
    RUN, and the bare shell command (after ``|N ARG=...`` build arguments) for RUN; BuildKit:
    ``COPY ... # buildkit``, ``RUN /bin/sh -c ...``.
    """
    if "#(nop)" in created_by:
        words = created_by.split("#(nop)", 1)[1].split()
        return words[0].upper() if words else "NOP"
    first = created_by.split(maxsplit=1)[0] if created_by.strip() else ""
    return first if first.isupper() and first.isalpha() else "RUN"


def layer_history(steps: list[dict[str, Any]], layers: int) -> list[dict[str, Any]]:
    """The history of the builder's ``steps`` told truthfully for the ``layers`` new layers they made.

    One entry without ``empty_layer`` per layer, in order, naming the step that made it;
    ``empty_layer`` on every config-only step. buildah with ``--layers=false`` squashes the
    stage into one layer and credits it to the last step (often ENTRYPOINT), marking the
    COPY and RUN steps that wrote it empty: then the file-writing steps become one entry
    that names them all, where the last of them stood.
    """
    writers = [i for i, entry in enumerate(steps) if step_instruction(entry.get("created_by", "")) in _FILE_STEPS]
    told = [i for i, entry in enumerate(steps) if not entry.get("empty_layer")]
    if len(told) == layers and set(told) <= set(writers):
        owned = set(told)  # the builder's own account holds (BuildKit: a RUN that changed nothing made no layer)
    elif len(writers) == layers:
        owned = set(writers)
    elif layers == 1 and writers:
        merged = {
            **steps[writers[-1]],
            "created_by": " ; ".join(steps[i].get("created_by", "").strip() for i in writers),
        }
        steps = [merged if i == writers[-1] else entry for i, entry in enumerate(steps) if i not in writers[:-1]]
        owned = {writers[-1] - (len(writers) - 1)}
    elif len(told) == layers:
        owned = set(told)  # a config step that made a layer (BuildKit's WORKDIR creating its directory)
    else:
        raise EnvbuildError(
            f"the builder made {layers} layers in {len(steps)} steps and its history cannot say which step made which",
            hint="this is a builder bug; report it with the Dockerfile and the build log",
        )
    history = []
    for i, entry in enumerate(steps):
        entry = {k: v for k, v in entry.items() if k != "empty_layer"}
        if i not in owned:
            entry["empty_layer"] = True
        history.append(entry)
    return history


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


def _link(source: Path, target: Path) -> None:
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


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
