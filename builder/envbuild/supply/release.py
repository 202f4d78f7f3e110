"""Release built images: sign -> push -> attach, the one path every command that releases takes.

``envbuild image --sign --push`` releases what it just built; ``envbuild sign`` / ``attest``
reuse :func:`attach` for images already in a registry. The build itself stays in
:mod:`envbuild.image.build`: release starts from its :class:`~envbuild.image.record.BuiltImage`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envbuild.oci.ref import Digest, ImageRef
from envbuild.progress import SILENT, Progress
from envbuild.registry.options import RegistryOptions

if TYPE_CHECKING:
    from pathlib import Path

    from envbuild.image.record import BuiltImage, BuiltIndex
    from envbuild.registry.client import RegistryClient
    from envbuild.supply.attest import Attestations
    from envbuild.supply.signing.signer import Signer


@dataclass(frozen=True, kw_only=True)
class Released:
    """One image after its release: what was signed, where it was pushed, what was attached there."""

    image: BuiltImage | BuiltIndex
    signed: tuple[str, ...] | None = None  # the kinds signed, when signing was asked for
    ref: ImageRef | None = None  # REPO:TAG@DIGEST, when pushed
    attached: list[dict[str, str]] | None = None  # the referrers pushed, when signed (now or before) and pushed
    skipped: tuple[str, ...] = ()  # kept bundles not attached, and why (about another digest)

    def to_json(self) -> dict[str, Any]:
        """The entry ``envbuild --json image`` prints for this image."""
        entry: dict[str, Any] = {
            "variant": self.image.variant,
            "digest": str(self.image.digest),
            "layout": str(self.image.layout),
            "cached": self.image.cached,
        }
        for image in getattr(self.image, "platforms", ()):  # an index: each platform's image
            entry.setdefault("platforms", {})[image.record.platform] = str(image.digest)
        if self.signed is not None:
            entry["signed"] = list(self.signed)
        if self.ref is not None:
            entry["ref"] = str(self.ref)
        if self.attached is not None:
            entry["attached"] = self.attached
        if self.skipped:
            entry["not_attached"] = list(self.skipped)
        return entry


def release(
    images: Iterable[BuiltImage | BuiltIndex],
    *,
    signer: Signer | None,
    push_to: ImageRef | None,
    registry: RegistryOptions | None = None,
    jobs: int = 4,
    source_repository: str | None = None,
    progress: Progress = SILENT,
) -> Iterator[Released]:
    """Sign (with ``signer``), push (to ``push_to``, tagged per variant) and attach, one image at a time.

    Each image is yielded when it is done, so a caller can report it before the next one
    starts. Without a signer nothing is signed now, but what ``envbuild sign`` or ``attest``
    kept beside the layout for this very digest is attached on push; without ``push_to``
    nothing leaves the disk, and the SBOM, provenance and signatures stay beside the layout.
    An index (a variant built for several platforms) is pushed whole; each platform's image
    gets its own signature, SBOM and provenance, and the index its signature.
    """
    from envbuild.supply.attest import attach_attestations

    client_for = (registry or RegistryOptions()).clients()
    for image in images:
        signed = _sign(image, signer, source_repository) if signer is not None else None
        kinds = None if signed is None else tuple(sorted({k for a in signed.values() for k in a.bundles}))
        if push_to is None:
            yield Released(image=image, signed=kinds)
            continue
        from envbuild.oci.layout import Layout
        from envbuild.registry.transfer import push_layout

        client = client_for(push_to)
        tag = f"{push_to.tag}-{image.variant}" if push_to.tag else image.variant
        target = push_to.with_tag(tag)
        with progress.phase(image.variant, f"pushing to {target}", items="blobs") as phase:
            pushed = push_layout(Layout.open(image.layout), target, client, jobs=jobs, progress=phase)
        if signed is not None:
            attached = [
                {**entry, **_about(image, digest)}
                for digest, attestations in signed.items()
                for entry in attach_attestations(client, push_to.repository, digest, attestations)
            ]
            yield Released(image=image, signed=kinds, ref=pushed.ref, attached=attached)
            continue
        kept: list[dict[str, str]] = []
        skipped: list[str] = []
        for layout_dir, digest in _parts(image):
            found, left = attach_kept(client, push_to.repository, layout_dir, digest)
            kept += [{**entry, **_about(image, digest)} for entry in found]
            skipped += left
        yield Released(image=image, ref=pushed.ref, attached=kept or None, skipped=tuple(skipped))


def _parts(image: BuiltImage | BuiltIndex) -> list[tuple[Path, Digest]]:
    """What is signed of ``image``: the image, or an index's platform images and the index itself."""
    from envbuild.image.record import BuiltIndex

    if isinstance(image, BuiltIndex):
        return [*((p.layout, p.digest) for p in image.platforms), (image.layout, image.digest)]
    return [(image.layout, image.digest)]


def _about(image: BuiltImage | BuiltIndex, digest: Digest) -> dict[str, str]:
    """For an index's attachments: which platform's image (or the index) each is about."""
    from envbuild.image.record import BuiltIndex

    if not isinstance(image, BuiltIndex):
        return {}
    platform = next((p.record.platform for p in image.platforms if p.digest == digest), "index")
    return {"subject": platform}


def _sign(image: BuiltImage | BuiltIndex, signer: Signer, source_repository: str | None) -> dict[Digest, Attestations]:
    """Each signed part's attestations (:func:`_parts`), kept beside its layout."""
    from envbuild.image.record import BuiltIndex
    from envbuild.supply.attest import make_attestations, sign_index

    if not isinstance(image, BuiltIndex):
        return {image.digest: make_attestations(image, signer, source_repository=source_repository)}
    signed = {p.digest: make_attestations(p, signer, source_repository=source_repository) for p in image.platforms}
    signed[image.digest] = sign_index(image, signer)
    return signed


def attach_kept(
    client: RegistryClient, repository: str, layout_dir: Path, digest: Digest
) -> tuple[list[dict[str, str]], tuple[str, ...]]:
    """Attach to ``digest`` in ``repository`` the signed bundles kept in ``layout_dir`` for it.

    What ``envbuild sign VARIANT`` signed is kept beside the build until its next push; this is
    that push's half. Returns what was attached and the kept bundles left out, with why.
    """
    from envbuild.supply.attest import attach_attestations, kept_attestations

    kept = kept_attestations(layout_dir, digest)
    attached = attach_attestations(client, repository, digest, kept.attestations) if kept.attestations.bundles else []
    return attached, kept.skipped
