"""The supply-chain files of a built image: SBOM, provenance, signatures — made, kept, attached.

For one local build (``.envbuild/images/<variant>/`` with its ``build.json``) envbuild makes
three in-toto statements about the image's manifest digest and signs each into a Sigstore
bundle, the way cosign v3 does:

=====================  ========================================  ===========================
statement              predicateType                             file beside the layout
=====================  ========================================  ===========================
image signature        ``https://sigstore.dev/cosign/sign/v1``   ``signature.sigstore.json``
SBOM (CycloneDX 1.6)   ``https://cyclonedx.org/bom``             ``sbom.sigstore.json``
provenance (SLSA v1)   ``https://slsa.dev/provenance/v1``        ``provenance.sigstore.json``
=====================  ========================================  ===========================

The unsigned documents are kept too (``sbom.cdx.json``, ``provenance.intoto.json``). In a
registry each bundle is an OCI 1.1 referrer of the image with artifactType
``application/vnd.dev.sigstore.bundle.v0.3+json`` and the annotations of cosign's
``specs/BUNDLE_SPEC.md``; the SBOM is also attached unsigned as
``application/vnd.cyclonedx+json`` for scanners that look for it. Nothing is ever put inside
the image, so its digest does not change.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from envbuild import __version__
from envbuild.errors import EnvbuildError, UsageError, strip_url_credentials
from envbuild.fsutil import atomic_write
from envbuild.git import default_repository, repository_uri
from envbuild.image.record import BuiltImage, BuiltIndex
from envbuild.image.render import SOURCE_LABEL
from envbuild.oci.imagefs import image_config, json_blob
from envbuild.oci.layout import Layout
from envbuild.oci.ref import Digest, ImageRef
from envbuild.registry.client import RegistryClient
from envbuild.registry.referrers import Blob, attach
from envbuild.supply.provenance import PREDICATE_TYPE as PROVENANCE_PREDICATE
from envbuild.supply.provenance import provenance_statement
from envbuild.supply.signing.bundle import BUNDLE_MEDIA_TYPE, envelope_of, load_bundle
from envbuild.supply.signing.dsse import Statement, statement
from envbuild.supply.signing.signer import KeySigner, Signer
from envbuild.workspace import IMAGES_OUT

SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
SBOM_PREDICATE = "https://cyclonedx.org/bom"
CYCLONEDX_TYPE = "application/vnd.cyclonedx+json"

SBOM_FILE = "sbom.cdx.json"
PROVENANCE_FILE = "provenance.intoto.json"
KINDS = ("signature", "sbom", "provenance")
PREDICATES = {"signature": SIGN_PREDICATE, "sbom": SBOM_PREDICATE, "provenance": PROVENANCE_PREDICATE}
KIND_OF = {predicate: kind for kind, predicate in PREDICATES.items()}


def bundle_file(kind: str) -> str:
    """The file beside the layout that holds the signed bundle of ``kind``."""
    return f"{kind}.sigstore.json"


@dataclass(frozen=True, kw_only=True)
class Attestations:
    """The supply-chain files of one image, as bytes, keyed by kind."""

    sbom: bytes | None
    provenance: bytes | None
    bundles: dict[str, bytes]


def local_builds(root: Path) -> list[BuiltImage]:
    """Every image built in the project at ``root`` whose build record names its digest.

    A build.json that is not a build record is an error naming it (:class:`BuildRecordError`),
    not a build silently missing from the list.
    """
    found = []
    for out in sorted(p.parent for p in (root / IMAGES_OUT).glob("*/build.json")):
        image = BuiltImage.open(out)
        if image is not None:
            found.append(image)
    return found


def find_build(root: Path, *, variant: str | None = None, digest: Digest | None = None) -> BuiltImage:
    """The local build of ``variant``, or the one whose manifest digest is ``digest``."""
    builds = local_builds(root)
    for build in builds:
        if (variant is None or build.variant == variant) and (digest is None or build.digest == digest):
            # Signing vouches for the image: its manifest must be there, be what the index says, and be one.
            json_blob(Layout.open(build.layout), build.digest, "manifest")
            return build
    have = ", ".join(f"{b.variant} ({b.digest.hex[:12]})" for b in builds) or "none"
    wanted = f"variant {variant}" if variant else f"image {digest}"
    platforms = [b.variant for b in builds if variant is not None and b.record.variant == variant]
    if platforms:  # a variant built for several platforms: each image has its own record, the index none
        raise UsageError(
            f"{variant} was built for several platforms: its image index has no build record of its own",
            hint=f"name one platform's image ({', '.join(platforms)}), or sign the index by digest after a push "
            "(envbuild sign REF@DIGEST); 'envbuild image --sign' signs the index and every platform",
        )
    raise UsageError(
        f"no local build of {wanted} in {root / IMAGES_OUT} (built here: {have})",
        hint="SBOM and provenance are made from the build record: run 'envbuild image' for it first "
        "(a rebuild from the same commit gives the same digest)",
    )


@dataclass(frozen=True, kw_only=True)
class Target:
    """What a command works on: an image in a registry, a local build, or both (the same digest)."""

    ref: ImageRef | None
    digest: Digest
    build: BuiltImage | None
    warning: str | None = None


def resolve_target(root: Path, text: str, client_for: Callable[[ImageRef], RegistryClient]) -> Target:
    """A variant name (``cpu-infer``: the local build) or a registry reference (its local build, if any).

    A reference by tag is resolved to its digest once, here, and everything after works on
    that digest, so a tag moved meanwhile cannot mix two images.
    """
    if "/" not in text:
        build = find_build(root, variant=text)
        return Target(ref=None, digest=build.digest, build=build)
    ref = ImageRef.parse(text)
    warning = None
    digest = ref.digest
    if digest is None:
        assert ref.tag is not None
        digest = client_for(ref).resolve(ref.repository, ref.tag)
        warning = f"{ref} resolved to {digest}: tags move, refer to images by digest"
    local = next((b for b in local_builds(root) if b.digest == digest), None)
    return Target(ref=ref, digest=digest, build=local, warning=warning)


def make_attestations(
    image: BuiltImage,
    signer: Signer | None,
    *,
    kinds: Iterable[str] = KINDS,
    source_repository: str | None = None,
) -> Attestations:
    """Make the statements of ``kinds`` for ``image``, sign them when ``signer`` is given, and keep them.

    Every file goes beside the layout, atomically. A key signer reuses a bundle already there
    when that bundle was made by the same key for the same statement, so signing twice adds no
    new referrer to the registry.
    """
    wanted = tuple(kinds)
    sbom = provenance = None
    statements: dict[str, bytes] = {}
    if "sbom" in wanted:
        from envbuild.supply.sbom import make_sbom, validate_sbom  # cyclonedx and jsonschema load slowly: only here

        sbom = make_sbom(
            Layout.open(image.layout), name=None, record=image.record, envbuild_version=__version__,
            image_ref_name=image.name,
        )  # fmt: skip
        validate_sbom(sbom)  # a signed SBOM is schema-valid by construction; verifiers rely on that
        atomic_write(image.layout / SBOM_FILE, sbom)
        statements["sbom"] = statement(image.name, str(image.digest), SBOM_PREDICATE, json.loads(sbom))
    if "provenance" in wanted:
        provenance = provenance_statement(
            image.record, image_name=image.name, image_digest=str(image.digest),
            source_repository=_repository(source_repository, image),
        )  # fmt: skip
        atomic_write(image.layout / PROVENANCE_FILE, provenance)
        statements["provenance"] = provenance
    if "signature" in wanted:
        statements["signature"] = signature_statement(image.name, image.digest)
    bundles: dict[str, bytes] = {}
    if signer is not None:
        for kind, payload in statements.items():
            path = image.layout / bundle_file(kind)
            bundle = _reusable(path, signer, payload) or signer.sign(payload)
            atomic_write(path, bundle)
            bundles[kind] = bundle
    return Attestations(sbom=sbom, provenance=provenance, bundles=bundles)


def sign_index(index: BuiltIndex, signer: Signer) -> Attestations:
    """Sign the image index of a variant built for several platforms, and keep the bundle beside it.

    Only a signature: the SBOM and provenance are each platform's image's own (:func:`make_attestations`).
    """
    payload = signature_statement(index.name, index.digest)
    path = index.layout / bundle_file("signature")
    bundle = _reusable(path, signer, payload) or signer.sign(payload)
    atomic_write(path, bundle)
    return Attestations(sbom=None, provenance=None, bundles={"signature": bundle})


def attestations_for(
    target: Target,
    root: Path,
    signer: Signer | None,
    *,
    kinds: Iterable[str] = KINDS,
    source_repository: str | None = None,
) -> Attestations:
    """:func:`make_attestations` for a local build; for a registry image with none, only its signature.

    Signing needs nothing but the digest; the SBOM and provenance come from the build record,
    so asking for them without a local build is the error :func:`find_build` explains.
    """
    if target.build is not None:
        return make_attestations(target.build, signer, kinds=kinds, source_repository=source_repository)
    if tuple(kinds) != ("signature",) or signer is None or target.ref is None:
        find_build(root, digest=target.digest)  # raises: there is no local build of this digest
    assert signer is not None and target.ref is not None
    payload = signature_statement(target.ref.repository, target.digest)
    return Attestations(sbom=None, provenance=None, bundles={"signature": signer.sign(payload)})


@dataclass(frozen=True, kw_only=True)
class Kept:
    """The signed files kept beside a local build that are about one digest, and why others are not."""

    attestations: Attestations
    skipped: tuple[str, ...]  # one sentence per kept bundle that is not about this digest


def kept_attestations(layout_dir: Path, digest: Digest) -> Kept:
    """The bundles ``envbuild sign`` / ``attest`` / ``image --sign`` kept in ``layout_dir`` for image ``digest``.

    A bundle is read, not verified (the verifier does that, with the keys it trusts); one whose
    statement is about another digest (the image was built again since it was signed) is
    skipped and said. The unsigned SBOM goes with its signed statement, when they agree.
    """
    bundles: dict[str, bytes] = {}
    skipped = []
    for kind in KINDS:
        path = layout_dir / bundle_file(kind)
        if not path.is_file():
            continue
        data = path.read_bytes()
        try:
            subjects = statement_of(data).subjects
        except EnvbuildError as exc:
            skipped.append(f"{path.name} is not a readable bundle ({exc.message})")
            continue
        if not any(s.digest.get("sha256") == digest.hex for s in subjects):
            about = ", ".join(f"sha256:{s.digest.get('sha256', '?')[:12]}" for s in subjects)
            skipped.append(f"{path.name} is about {about}, not this image ({digest.hex[:12]})")
            continue
        bundles[kind] = data
    sbom = None
    if "sbom" in bundles and (layout_dir / SBOM_FILE).is_file():
        document = (layout_dir / SBOM_FILE).read_bytes()
        with contextlib.suppress(ValueError, EnvbuildError):
            if json.loads(document) == statement_of(bundles["sbom"]).predicate:
                sbom = document
    return Kept(attestations=Attestations(sbom=sbom, provenance=None, bundles=bundles), skipped=tuple(skipped))


def attach_attestations(
    client: RegistryClient, repository: str, digest: Digest, attestations: Attestations
) -> list[dict[str, str]]:
    """Push every bundle (and the plain SBOM) as an OCI 1.1 referrer of ``digest``; return what was attached."""
    attached = []
    if attestations.sbom is not None:
        sbom = Blob(
            media_type=CYCLONEDX_TYPE, data=attestations.sbom, annotations=_title(attestations.sbom, ".cdx.json")
        )
        descriptor = attach(client, repository, digest, artifact_type=CYCLONEDX_TYPE, blobs=[sbom])
        attached.append({"kind": "sbom-document", "digest": str(descriptor.digest), "artifactType": CYCLONEDX_TYPE})
    for kind in KINDS:
        bundle = attestations.bundles.get(kind)
        if bundle is None:
            continue
        descriptor = attach(
            client, repository, digest, artifact_type=BUNDLE_MEDIA_TYPE,
            blobs=[Blob(media_type=BUNDLE_MEDIA_TYPE, data=bundle, annotations=_title(bundle, ".sigstore.json"))],
            annotations={
                "dev.sigstore.bundle.content": "dsse-envelope",
                "dev.sigstore.bundle.predicateType": PREDICATES[kind],
            },
        )  # fmt: skip
        attached.append({"kind": kind, "digest": str(descriptor.digest), "artifactType": BUNDLE_MEDIA_TYPE})
    return attached


def signature_statement(name: str, digest: Digest) -> bytes:
    """The image-signature statement: cosign's sign/v1 predicate type, with the claims ``cosign verify`` prints.

    cosign v3 signs an empty predicate, which the in-toto attestation library rejects
    ("Predicate object required"); this one names the image and digest the subject names.
    """
    predicate = {
        "critical": {
            "identity": {"docker-reference": name},
            "image": {"docker-manifest-digest": str(digest)},
            "type": SIGN_PREDICATE,
        },
        "optional": {},
    }
    return statement(name, str(digest), SIGN_PREDICATE, predicate)


def _repository(given: str | None, image: BuiltImage) -> str | None:
    """The repository provenance names: ``given`` (which must be a repository URL), else the image's.

    The image's is its source label (the spec's ``repository``), else the checkout's remote.
    """
    if not given:
        return repository_uri(source_label(image)) or default_repository(image.layout)
    uri = repository_uri(given)
    if uri is None:
        raise UsageError(
            f"--source-repository {strip_url_credentials(given)!r} names no repository another machine can reach",
            hint="pass its https URL or git remote (git@host:org/repo), or leave it out",
        )
    return uri


def source_label(image: BuiltImage) -> str | None:
    """The image's org.opencontainers.image.source label, if it has one."""
    config = image_config(Layout.open(image.layout), image.digest)
    value = ((config.get("config") or {}).get("Labels") or {}).get(SOURCE_LABEL)
    return value if isinstance(value, str) else None


def _reusable(path: Path, signer: Signer, payload: bytes) -> bytes | None:
    """The bundle at ``path`` if ``signer`` is a key signer and the bundle is its signature over ``payload``."""
    if not isinstance(signer, KeySigner) or not path.is_file():
        return None
    from envbuild.supply.signing.bundle import verify_key_bundle

    data = path.read_bytes()
    try:
        signed = verify_key_bundle(load_bundle(data), signer.public_key)
    except EnvbuildError:
        return None
    return data if signed.raw == payload else None


def _title(data: bytes, suffix: str) -> tuple[tuple[str, str], ...]:
    """The layer title cosign's bundle spec suggests: ``sha256-<hex><suffix>``."""
    return (("org.opencontainers.image.title", f"sha256-{Digest.of(data).hex}{suffix}"),)


def statement_of(bundle: bytes) -> Statement:
    """The in-toto statement inside a bundle, unverified (for reports only, never for decisions)."""
    return Statement.parse(envelope_of(load_bundle(bundle)).payload)
