"""Release built images: sign -> push -> attach, the one path every command that releases takes.

``envbuild image --sign --push`` releases what it just built; ``envbuild sign`` / ``attest``
reuse :func:`attach` for images already in a registry. The build itself stays in
:mod:`envbuild.image.build`: release starts from its :class:`~envbuild.image.record.BuiltImage`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envbuild.oci.ref import ImageRef
from envbuild.registry.options import RegistryOptions

if TYPE_CHECKING:
    from envbuild.image.record import BuiltImage
    from envbuild.supply.attest import Attestations
    from envbuild.supply.signing.signer import Signer


@dataclass(frozen=True, kw_only=True)
class Released:
    """One image after its release: what was signed, where it was pushed, what was attached there."""

    image: BuiltImage
    signed: tuple[str, ...] | None = None  # the kinds signed, when signing was asked for
    ref: ImageRef | None = None  # REPO:TAG@DIGEST, when pushed
    attached: list[dict[str, str]] | None = None  # the referrers pushed, when signed and pushed

    def to_json(self) -> dict[str, Any]:
        """The entry ``envbuild --json image`` prints for this image."""
        entry: dict[str, Any] = {
            "variant": self.image.variant,
            "digest": str(self.image.digest),
            "layout": str(self.image.layout),
            "cached": self.image.cached,
        }
        if self.signed is not None:
            entry["signed"] = list(self.signed)
        if self.ref is not None:
            entry["ref"] = str(self.ref)
        if self.attached is not None:
            entry["attached"] = self.attached
        return entry


def release(
    images: Iterable[BuiltImage],
    *,
    signer: Signer | None,
    push_to: ImageRef | None,
    registry: RegistryOptions | None = None,
    jobs: int = 4,
    source_repository: str | None = None,
) -> Iterator[Released]:
    """Sign (with ``signer``), push (to ``push_to``, tagged per variant) and attach, one image at a time.

    Each image is yielded when it is done, so a caller can report it before the next one
    starts. Without a signer nothing is signed; without ``push_to`` nothing leaves the disk,
    and the SBOM, provenance and signatures stay beside the layout.
    """
    from envbuild.supply.attest import attach_attestations, make_attestations

    client_for = (registry or RegistryOptions()).clients()
    for image in images:
        attestations = None
        if signer is not None:
            attestations = make_attestations(image, signer, source_repository=source_repository)
        if push_to is None:
            yield Released(image=image, signed=_signed(attestations))
            continue
        from envbuild.oci.layout import Layout
        from envbuild.registry.transfer import push_layout

        client = client_for(push_to)
        tag = f"{push_to.tag}-{image.variant}" if push_to.tag else image.variant
        pushed = push_layout(Layout.open(image.layout), push_to.with_tag(tag), client, jobs=jobs)
        attached = (
            attach_attestations(client, push_to.repository, image.digest, attestations)
            if attestations is not None
            else None
        )
        yield Released(image=image, signed=_signed(attestations), ref=pushed.ref, attached=attached)


def _signed(attestations: Attestations | None) -> tuple[str, ...] | None:
    return None if attestations is None else tuple(sorted(attestations.bundles))
