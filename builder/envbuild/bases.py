"""Pinning base images at lock time, so no build ever reads a floating reference."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from envbuild.errors import UsageError
from envbuild.lockfile import canonical_json
from envbuild.spec import Base, Spec

_INDEX_MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


def pin_bases(spec: Spec) -> dict[str, dict[str, Any]]:
    """Each accelerator's base, resolved to something immutable: a digest or a content-hashed recipe."""
    return {
        accel.name: pin_base(accel.base, spec.root, where=f"accelerators.{accel.name}.base")
        for accel in spec.accelerators
    }


def pin_base(base: Base, root: Path, *, where: str) -> dict[str, Any]:
    """One base, pinned."""
    if base.debian:
        recipe = {"suite": base.debian, "packages": sorted(set(base.packages))}
        return {
            "kind": "debian",
            **recipe,
            "recipe-sha256": hashlib.sha256(canonical_json(recipe).encode()).hexdigest(),
        }
    if base.image:
        if "@sha256:" not in base.image:
            raise UsageError(
                f"{where}: {base.image!r} is a tag; envbuild locks bases by digest",
                hint="write the reference with its digest (REF@sha256:...); "
                "`skopeo inspect --format '{{.Digest}}' docker://REF` prints it",
            )
        return {"kind": "image", "ref": base.image, "digest": base.image.rsplit("@", 1)[1]}
    assert base.oci_layout is not None
    return {"kind": "oci-layout", "path": base.oci_layout, "digest": layout_digest(root / base.oci_layout, where=where)}


def layout_digest(layout: Path, *, where: str) -> str:
    """The digest of the single image in an OCI layout's index.json."""
    index_file = layout / "index.json"
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
        manifests = [m for m in index["manifests"] if m.get("mediaType") in _INDEX_MANIFEST_TYPES]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"{where}: {layout} is not a readable OCI layout ({exc})",
            hint="point oci-layout at a directory holding index.json and blobs/",
        ) from exc
    if len(manifests) != 1:
        raise UsageError(
            f"{where}: {layout} holds {len(manifests)} images, expected exactly one",
            hint="export a layout with just the base image",
        )
    digest = str(manifests[0]["digest"])
    blob = layout / "blobs" / Path(*digest.split(":", 1))
    if not blob.is_file():
        raise UsageError(
            f"{where}: {layout} lacks the blob of {digest}", hint="the layout is incomplete; export it again"
        )
    return digest
