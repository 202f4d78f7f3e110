"""Pinning base images at lock time, so no build ever reads a floating reference."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild.errors import EnvbuildError, UsageError
from envbuild.lock.lockfile import DebianBase, ImageBase, LayoutBase, PinnedBase, canonical_json, sha256_text
from envbuild.lock.spec import Base, Spec
from envbuild.oci.ref import ImageRef

if TYPE_CHECKING:
    from envbuild.registry.options import RegistryOptions

_INDEX_MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


def pin_bases(
    spec: Spec, registry: RegistryOptions | None = None, *, keep: dict[str, PinnedBase] | None = None
) -> dict[str, PinnedBase]:
    """Each accelerator's base, resolved to something immutable: a digest or a content-hashed recipe.

    A registry tag is resolved to the digest it points at now (the registry is
    reached with ``registry`` options), unless ``keep`` (the previous lock's bases)
    already pinned the same reference: like package pins, a base moves only on upgrade.
    """
    pinned: dict[str, PinnedBase] = {}
    for accel in spec.accelerators:
        before = (keep or {}).get(accel.name)
        if isinstance(before, ImageBase) and before.ref == accel.base.image and before.digest:
            pinned[accel.name] = before
        else:
            where = f"accelerators.{accel.name}.base"
            pinned[accel.name] = pin_base(accel.base, spec.root, where=where, registry=registry)
    return pinned


def pin_base(base: Base, root: Path, *, where: str, registry: RegistryOptions | None = None) -> PinnedBase:
    """One base, pinned."""
    described = describe_base(base)
    if isinstance(described, ImageBase):
        ref = ImageRef.parse(described.ref)
        if ref.digest is None:
            from envbuild.registry.client import RegistryClient  # only bases given by tag need the network

            try:
                digest = RegistryClient.for_ref(ref, registry).resolve(ref.repository, ref.reference)
            except EnvbuildError as exc:
                exc.message = f"{where}: cannot pin {base.image} to a digest: {exc.message}"
                raise
            return replace(described, digest=str(digest))
        return replace(described, digest=str(ref.digest))
    if isinstance(described, LayoutBase):
        return replace(described, digest=layout_digest(root / described.path, where=where))
    return described


def pin_bases_offline(spec: Spec, recorded: dict[str, PinnedBase]) -> tuple[dict[str, PinnedBase], dict[str, str]]:
    """Each accelerator's base as :func:`pin_bases` would pin it now, without the network, and why it
    differs from ``recorded`` (the lock's bases), by accelerator.

    A registry tag keeps its locked digest, as ``lock`` keeps it; an OCI layout is read again,
    as ``lock`` reads it again, so a layout whose image changed makes the lock stale.
    """
    pinned: dict[str, PinnedBase] = {}
    problems: dict[str, str] = {}
    for accel in spec.accelerators:
        before = recorded.get(accel.name)
        now: PinnedBase = describe_base(accel.base)
        if before is None or now != before.described():
            problems[accel.name] = base_change(accel.name, before, now)
            continue
        if isinstance(now, ImageBase):
            ref = ImageRef.parse(now.ref)
            now = replace(now, digest=str(ref.digest) if ref.digest else before.digest)
        elif isinstance(now, LayoutBase):
            where = f"accelerators.{accel.name}.base"
            try:
                now = replace(now, digest=layout_digest(spec.root / now.path, where=where))
            except UsageError as exc:
                problems[accel.name] = exc.message
                continue
        if now != before:
            problems[accel.name] = (
                f"the {accel.name} base {summary(now)} is {now.digest or 'not pinned'}, "
                f"locked as {before.digest or 'not pinned'}"
            )
        pinned[accel.name] = now
    return pinned, problems


def base_change(name: str, before: PinnedBase | None, now: PinnedBase) -> str:
    """How the ``name`` base the spec describes differs from the locked one, in words that differ.

    Two bases can read the same in a summary (a Debian recipe whose digest changed while its
    suite and packages did not: another envbuild's recipe, or an edited lock); then the fields
    that differ are said, not "X -> X".
    """
    if before is None:
        return f"the {name} base is not in the lock (the spec says {summary(now)})"
    if summary(before) != summary(now):
        return f"the {name} base changed: {summary(before)} -> {summary(now)}"
    old, new = before.described().to_json(), now.to_json()
    fields = [
        f"{k} {old.get(k, 'none')} -> {new.get(k, 'none')}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    return f"the {name} base {summary(now)} is not the locked one: {', '.join(fields)}"


def summary(base: PinnedBase | None) -> str:
    """A pinned or described base in a few words, for messages."""
    return "none" if base is None else base.summary()


def describe_base(base: Base) -> PinnedBase:
    """What the spec says about a base, without any network: kind and reference or recipe (no digest yet)."""
    if base.debian:
        recipe = {"suite": base.debian, "packages": sorted(set(base.packages))}
        return DebianBase(
            suite=base.debian,
            packages=tuple(recipe["packages"]),
            recipe_sha256=sha256_text(canonical_json(recipe)),
        )
    if base.image:
        return ImageBase(ref=base.image)
    assert base.oci_layout is not None, "the spec parser allows exactly one kind of base"
    return LayoutBase(path=base.oci_layout)


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
