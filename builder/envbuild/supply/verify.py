"""``verify_image``: may this image be deployed? Every answer comes with its reason.

Checked, in order, against a registry:

1. the reference: a tag is resolved to its digest (with a warning: tags move); a reference
   with both a tag and a digest fails if the tag has moved elsewhere;
2. the image: its manifest, config and every layer are fetched and hashed, so a registry that
   serves other bytes for a digest is caught;
3. the referrers: every Sigstore bundle attached to the digest is checked against the trusted
   signers (public keys, or keyless identities with their OIDC issuer), and its statement's
   subject must be this very digest (a signature replayed from another image fails);
4. what the policy requires (by default the image signature, the SBOM and the provenance):
   each needs at least one valid bundle; the SBOM must be valid CycloneDX 1.6 describing
   this image, the provenance must be of envbuild's buildType and, when the policy says so,
   from the required builder and source repository.

Attachments nobody requires and that do not verify are reported but do not fail the image:
anyone who can push to a repository can attach junk to any image there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from envbuild.errors import EnvbuildError
from envbuild.git import repository_uri
from envbuild.oci.layout import INDEX_TYPES, DescriptorError, children
from envbuild.oci.ref import Digest, ImageRef
from envbuild.registry.client import RegistryClient, RegistryError, RegistryTLSError, RegistryUnreachableError
from envbuild.registry.referrers import list_referrers
from envbuild.supply.attest import KIND_OF, KINDS, PREDICATES, statement_of
from envbuild.supply.policy import Policy, require_signers
from envbuild.supply.provenance import BUILD_TYPE
from envbuild.supply.signing.bundle import (
    BUNDLE_MEDIA_TYPE,
    SubjectMismatchError,
    load_bundle,
    verify_key_bundle,
    verify_keyless_bundle,
)
from envbuild.supply.signing.dsse import Statement
from envbuild.words import plural

NOT_SIGNED = "no signature"  # how a signature check that found none attached starts


class VerificationFailed(EnvbuildError):
    """The image did not verify; the report says why. Exit 1."""


@dataclass(frozen=True, kw_only=True)
class Check:
    """One line of the verdict: what was checked, whether it held, and why."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, kw_only=True)
class Report:
    """The verdict on one image."""

    ref: str
    digest: str | None
    checks: tuple[Check, ...]
    warnings: tuple[str, ...] = ()
    attachments: tuple[dict[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        """True only when every check held (and there was something to check)."""
        return bool(self.checks) and all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """The report as plain data for ``--json``."""
        return {
            "ref": self.ref,
            "digest": self.digest,
            "verified": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "warnings": list(self.warnings),
            "attachments": list(self.attachments),
        }

    def failures(self) -> list[Check]:
        """The checks that did not hold."""
        return [c for c in self.checks if not c.ok]


@dataclass(kw_only=True)
class _Outcome:
    """What one attached bundle turned out to be."""

    digest: str
    kind: str | None = None
    statement: Statement | None = None
    signer: str | None = None
    problem: str | None = None
    extra: list[str] = field(default_factory=list)


def verify_image(
    client: RegistryClient,
    ref: ImageRef,
    policy: Policy,
    *,
    check_layers: bool = True,
    jobs: int = 4,
    platform: str | None = None,
) -> Report:
    """Verify the image ``ref`` against ``policy``; the report holds every check and its reason.

    An image index (a variant built for several platforms) is verified whole: the index's own
    signature, then every platform's image (or only ``platform``'s), each with its blobs, its
    signature, SBOM and provenance; those checks carry the platform in their name
    (``image linux/arm64``), so a failure says which platform it is about.
    """
    require_signers(policy)
    checks: list[Check] = []
    warnings: list[str] = []
    digest = _resolve(client, ref, checks, warnings)
    if digest is None:
        return Report(ref=str(ref), digest=None, checks=tuple(checks), warnings=tuple(warnings))
    try:
        platforms = _platforms(client, ref.repository, digest)
    except _CANNOT_ASK:
        raise
    except (RegistryError, DescriptorError) as exc:
        checks.append(Check(name="image", ok=False, detail=exc.message))
        return Report(ref=str(ref), digest=str(digest), checks=tuple(checks), warnings=tuple(warnings))
    outcomes: list[_Outcome] = []
    if platforms is None:  # one image
        if platform is not None:
            checks.append(_platform_of_image(client, ref.repository, digest, platform))
        checks.append(_check_image(client, ref.repository, digest, check_layers=check_layers, jobs=jobs))
        _attestations(client, ref.repository, digest, policy, policy.require, checks, outcomes)
    else:
        chosen = _chosen(platforms, platform, checks)
        _attestations(client, ref.repository, digest, policy, ("signature",), checks, outcomes, about="index")
        for name, image in chosen.items():
            checks.append(_check_image(client, ref.repository, image, check_layers=check_layers, jobs=jobs, about=name))
            _attestations(client, ref.repository, image, policy, policy.require, checks, outcomes, about=name)
    attachments = tuple(
        {
            "digest": o.digest,
            "kind": o.kind or "unknown",
            "verified": "yes" if o.problem is None else "no",
            "detail": o.signer or o.problem or "",
        }
        for o in outcomes
    )
    return Report(
        ref=str(ref), digest=str(digest), checks=tuple(checks), warnings=tuple(warnings), attachments=attachments
    )


def _platforms(client: RegistryClient, repository: str, digest: Digest) -> dict[str, Digest] | None:
    """An index's images by platform (``linux/arm64``), in its order; None for an image."""
    manifest = client.get_manifest(repository, str(digest))
    if manifest.media_type not in INDEX_TYPES:
        return None
    _blobs, images = children(manifest.json())
    return {d.platform or f"unknown platform {n}": d.digest for n, d in enumerate(images, 1)}


def _chosen(platforms: dict[str, Digest], wanted: str | None, checks: list[Check]) -> dict[str, Digest]:
    """The platforms to verify: every one, or ``wanted`` (``linux/arm64`` matches ``linux/arm64/v8``)."""
    if wanted is None:
        checks.append(Check(name="platforms", ok=True, detail=f"an index of {', '.join(platforms)}"))
        return platforms
    found = {name: d for name, d in platforms.items() if name == wanted or name.startswith(f"{wanted}/")}
    if found:
        detail = f"verifying {', '.join(found)} of {', '.join(platforms)}"
        checks.append(Check(name="platforms", ok=True, detail=detail))
    else:
        checks.append(
            Check(name="platforms", ok=False, detail=f"the index has no {wanted} image; it has {', '.join(platforms)}")
        )
    return found


def _platform_of_image(client: RegistryClient, repository: str, digest: Digest, wanted: str) -> Check:
    """Whether the single image ``digest`` is for ``wanted`` (its config's os and architecture)."""
    try:
        manifest = client.get_manifest(repository, str(digest)).json()
        config = json.loads(client.get_blob(repository, Digest.parse(manifest["config"]["digest"])))
        platform = f"{config['os']}/{config['architecture']}"
    except (RegistryError, KeyError, TypeError, ValueError) as exc:
        return Check(name="platforms", ok=False, detail=f"cannot read the image's platform: {exc}")
    ok = wanted == platform or wanted.startswith(f"{platform}/")
    detail = f"a single image for {platform}" + ("" if ok else f", not {wanted}")
    return Check(name="platforms", ok=ok, detail=detail)


def _attestations(
    client: RegistryClient,
    repository: str,
    digest: Digest,
    policy: Policy,
    kinds: tuple[str, ...],
    checks: list[Check],
    outcomes: list[_Outcome],
    *,
    about: str | None = None,
) -> None:
    """The ``kinds`` the policy requires, checked among the bundles attached to ``digest``; named ``KIND ABOUT``."""
    suffix = f" {about}" if about else ""
    try:
        referrers = list_referrers(client, repository, digest)
    except RegistryError as exc:
        detail = f"cannot list the referrers of {digest}: {exc.message}"
        checks.append(Check(name=f"referrers{suffix}", ok=False, detail=detail))
        return
    bundles = [d for d in referrers if d.artifact_type == BUNDLE_MEDIA_TYPE]
    found = [_evaluate(client, repository, d.digest, digest, policy) for d in bundles]
    outcomes += found
    for kind in KINDS:
        if kind in kinds and kind in policy.require:
            check = _requirement(kind, found, digest, policy)
            checks.append(Check(name=f"{check.name}{suffix}", ok=check.ok, detail=check.detail))


def publisher_hint(report: Report, ref: ImageRef, policy: Policy) -> str | None:
    """When no signature is attached at all: the command its publisher runs to sign and attach one.

    A signer the policy trusts is the one who can fix it, so the command names that signer's
    way to sign: the private half of a trusted key, or keyless as a trusted identity.
    """
    missing = any(
        c.name.split()[0] == "signature" and c.detail.startswith(f"{NOT_SIGNED} is attached") for c in report.failures()
    )
    if not missing or report.digest is None:
        return None
    pinned = ImageRef(registry=ref.registry, repository=ref.repository, tag=None, digest=Digest.parse(report.digest))
    if policy.keys:
        how = f"--key PRIVATE_KEY (the private key of {policy.keys[0].source})"
    else:
        who = policy.identities[0].identity if policy.identities else "a trusted identity"
        how = f"--keyless (signing in as {who})"
    return (
        f"do not deploy it unsigned. Its publisher signs it and attaches the signature with: envbuild sign {pinned} "
        f"{how}; a signature made earlier with 'envbuild sign VARIANT' is attached by the next 'envbuild push' or "
        "'envbuild image --push' of that build"
    )


def verified_provenance(bundles: list[bytes], subject: Digest, policy: Policy) -> Statement:
    """The provenance statement of the first bundle that verifies for ``subject``; else :class:`VerificationFailed`."""
    outcomes = [check_bundle(b, subject, policy) for b in bundles]
    for outcome in outcomes:
        if outcome.kind == "provenance" and outcome.problem is None and outcome.statement is not None:
            return outcome.statement
    reasons = sorted({o.problem for o in outcomes if o.problem}) or [f"no provenance is attached to {subject}"]
    raise VerificationFailed(
        f"the provenance of {subject} does not verify: {'; '.join(reasons)}",
        hint="an audit rebuild starts only from provenance signed by a trusted signer (--key, "
        "--certificate-identity/--certificate-oidc-issuer or --policy)",
    )


def attached_bundles(client: RegistryClient, repository: str, subject: Digest) -> list[bytes]:
    """Every Sigstore bundle attached to ``subject`` (unverified; bundles that cannot be read are skipped)."""
    found = []
    for descriptor in list_referrers(client, repository, subject, artifact_type=BUNDLE_MEDIA_TYPE):
        layers = client.get_manifest(repository, str(descriptor.digest)).json().get("layers") or []
        if layers:
            found.append(client.get_blob(repository, Digest.parse(layers[0]["digest"])))
    return found


def render_report(report: Report) -> str:
    """The short human report: the verdict, then one line per check."""
    target = f"{report.ref.split('@', 1)[0]}@{report.digest}" if report.digest else report.ref
    lines = [f"{'verified' if report.ok else 'NOT VERIFIED'}: {target}"]
    lines += [f"  {'ok ' if c.ok else 'BAD'} {c.name:<10} {c.detail}" for c in report.checks]
    lines += [f"  warning: {w}" for w in report.warnings]
    return "\n".join(lines)


# A registry envbuild cannot talk to (down, plain HTTP, untrusted certificate) gives no verdict on
# the image: its own error and hint, not "the tag was moved" or "do not deploy it".
_CANNOT_ASK = (RegistryTLSError, RegistryUnreachableError)


def _resolve(client: RegistryClient, ref: ImageRef, checks: list[Check], warnings: list[str]) -> Digest | None:
    """The digest to verify; a moved tag fails the "reference" check."""
    if ref.tag is None:
        assert ref.digest is not None, "an image reference has a tag or a digest"
        return ref.digest
    try:
        current = client.resolve(ref.repository, ref.tag)
    except _CANNOT_ASK:
        raise
    except RegistryError as exc:
        if ref.digest is None:
            checks.append(Check(name="reference", ok=False, detail=f"cannot resolve tag {ref.tag}: {exc.message}"))
            return None
        current = None
    if ref.digest is None:
        warnings.append(
            f"verified the image the tag {ref.tag} points at now ({current}); tags move, so deploy "
            f"{ref.with_digest(current) if current else ref} by digest"
        )
        checks.append(Check(name="reference", ok=True, detail=f"tag {ref.tag} points at {current}"))
        return current
    if current != ref.digest:
        checks.append(
            Check(
                name="reference",
                ok=False,
                detail=f"tag {ref.tag} points at {current or 'nothing'}, not {ref.digest}: the tag was moved",
            )
        )
    else:
        checks.append(Check(name="reference", ok=True, detail=f"tag {ref.tag} still points at {ref.digest}"))
    return ref.digest


def _check_image(
    client: RegistryClient, repository: str, digest: Digest, *, check_layers: bool, jobs: int, about: str | None = None
) -> Check:
    """Fetch the manifest(s), config and layers by digest and hash them all; the check is ``image ABOUT``."""
    name = f"image {about}" if about else "image"
    try:
        manifests = [client.get_manifest(repository, str(digest))]
        blobs: list[Digest] = []
        while manifests:
            manifest = manifests.pop()
            sub_blobs, sub_manifests = children(manifest.json())
            if manifest.media_type in INDEX_TYPES:
                manifests += [client.get_manifest(repository, str(d.digest)) for d in sub_manifests]
            blobs += [d.digest for d in sub_blobs]
        checked = blobs if check_layers else blobs[:1]
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            sizes = list(pool.map(lambda d: client.check_blob(repository, d), checked))
    except _CANNOT_ASK:
        raise
    except RegistryError as exc:
        return Check(name=name, ok=False, detail=exc.message)
    if not check_layers:
        return Check(name=name, ok=True, detail="manifest and config match their digests (layers not fetched)")
    return Check(
        name=name,
        ok=True,
        detail=f"manifest and {plural(len(sizes), 'blob')} ({plural(sum(sizes), 'byte')}) match their digests",
    )


def _evaluate(client: RegistryClient, repository: str, referrer: Digest, subject: Digest, policy: Policy) -> _Outcome:
    """Fetch one attached bundle and check it (:func:`check_bundle`)."""
    try:
        manifest = client.get_manifest(repository, str(referrer)).json()
        layers = manifest.get("layers") or []
        if not layers:
            return _Outcome(digest=str(referrer), problem="the bundle artifact has no layer")
        data = client.get_blob(repository, Digest.parse(layers[0]["digest"]))
    except (EnvbuildError, KeyError, TypeError) as exc:
        return _Outcome(digest=str(referrer), problem=f"cannot read the attached bundle: {exc}")
    outcome = check_bundle(data, subject, policy)
    outcome.digest = str(referrer)
    return outcome


def check_bundle(data: bytes, subject: Digest, policy: Policy) -> _Outcome:
    """Check one bundle against every trusted signer; the outcome names the signer or the problem."""
    outcome = _Outcome(digest=str(Digest.of(data)))
    try:
        bundle = load_bundle(data)
    except EnvbuildError as exc:
        outcome.problem = f"cannot read the bundle: {exc.message}"
        return outcome
    try:
        outcome.kind = KIND_OF.get(statement_of(data).predicate_type, "other")  # unverified: for the report only
    except (EnvbuildError, KeyError, TypeError):
        outcome.kind = None
    material = bundle.get("verificationMaterial")
    keyed = isinstance(material, dict) and "publicKey" in material
    attempts: list[tuple[Callable[[], Statement], str]]
    if keyed:
        attempts = [
            (partial(verify_key_bundle, bundle, k.public_key, expected_subject_digest=str(subject)), f"key {k.hint}")
            for k in policy.keys
        ]
        none_trusted = "signed with a key, and no trusted key was given"
    else:
        attempts = [
            (
                partial(
                    verify_keyless_bundle, data, identity=i.identity, issuer=i.issuer,
                    expected_subject_digest=str(subject),
                ),
                f"{i.identity} ({i.issuer})",
            )
            for i in policy.identities
        ]  # fmt: skip
        none_trusted = "signed keyless, and no trusted identity was given"
    problems: list[EnvbuildError] = []
    for attempt, signer in attempts:
        try:
            outcome.statement = attempt()
        except EnvbuildError as exc:
            problems.append(exc)
            continue
        outcome.signer = signer
        outcome.kind = KIND_OF.get(outcome.statement.predicate_type, "other")
        return outcome
    # A replay (the right signer, another image) says more than "another key" tried alongside.
    best = next((p for p in problems if isinstance(p, SubjectMismatchError)), problems[-1] if problems else None)
    outcome.problem = best.message if best else none_trusted
    return outcome


def _requirement(kind: str, outcomes: list[_Outcome], digest: Digest, policy: Policy) -> Check:
    """Whether some attached bundle of ``kind`` verified, and its content holds."""
    verified = [o for o in outcomes if o.kind == kind and o.problem is None]
    failed_content: list[str] = []
    for outcome in verified:
        assert outcome.statement is not None
        problem = _content_problem(kind, outcome.statement, digest, policy)
        if problem is None:
            return Check(name=kind, ok=True, detail=f"{_summary(kind, outcome.statement)}, signed by {outcome.signer}")
        failed_content.append(problem)
    if failed_content:
        return Check(name=kind, ok=False, detail="; ".join(failed_content))
    candidates = [o for o in outcomes if o.kind == kind or o.kind is None]
    if not candidates:
        what = {"signature": NOT_SIGNED, "sbom": "no SBOM attestation", "provenance": "no provenance attestation"}
        detail = f"{what[kind]} is attached to {digest}"
        others = sorted({o.problem for o in outcomes if o.problem})
        if others:
            # Say why the other attachments did not count: a keyless signature for the wrong identity
            # should read as that, not as "nothing attached".
            detail += f" (other attachments did not verify: {'; '.join(others)})"
        return Check(name=kind, ok=False, detail=detail)
    reasons = sorted({o.problem or "" for o in candidates})
    return Check(name=kind, ok=False, detail="; ".join(reasons))


def _content_problem(kind: str, stmt: Statement, digest: Digest, policy: Policy) -> str | None:
    """What is wrong with a validly signed statement's content, or None."""
    if kind == "sbom":
        problem = _sbom_problem(stmt.predicate, full=policy.validate_sbom)
        if problem:
            return problem
        described = ((stmt.predicate.get("metadata") or {}).get("component") or {}).get("version")
        if described != str(digest):
            return f"the SBOM describes {described}, not {digest}"
    if kind == "provenance":
        definition = stmt.predicate.get("buildDefinition") or {}
        if definition.get("buildType") != BUILD_TYPE:
            return f"provenance of buildType {definition.get('buildType')!r}, not {BUILD_TYPE}"
        builder = ((definition.get("internalParameters") or {}).get("builder") or {}).get("name")
        if policy.builder and builder != policy.builder:
            return f"built with {builder!r}; the policy requires {policy.builder!r}"
        source = ((definition.get("externalParameters") or {}).get("source") or {}).get("repository")
        if policy.source_repository and _norm_repo(source) != _norm_repo(policy.source_repository):
            return f"built from {source or 'an unnamed repository'}; the policy requires {policy.source_repository}"
    if kind not in PREDICATES:
        return f"unknown attestation kind {kind}"
    return None


def _sbom_problem(document: Mapping[str, Any], *, full: bool) -> str | None:
    """What makes ``document`` not a usable CycloneDX 1.6 SBOM, or None.

    The structural check is what a deploy gate needs and takes microseconds. The full JSON
    schema check costs about two seconds (jsonschema's import alone), so it is opt-in: envbuild
    validates every SBOM against the schema before signing it.
    """
    if document.get("bomFormat") != "CycloneDX" or document.get("specVersion") != "1.6":
        found = (document.get("bomFormat"), document.get("specVersion"))
        return f"not a CycloneDX 1.6 SBOM (bomFormat {found[0]!r}, specVersion {found[1]!r})"
    components = document.get("components")
    if not isinstance(components, list) or not all(
        isinstance(c, dict) and c.get("name") and c.get("bom-ref") for c in components
    ):
        return "the SBOM's components are missing or lack a name and bom-ref"
    if full:
        from envbuild.supply.sbom import validate_sbom

        try:
            validate_sbom(json.dumps(dict(document)).encode())
        except EnvbuildError as exc:
            return exc.message
    return None


def _summary(kind: str, stmt: Statement) -> str:
    if kind == "sbom":
        return (
            f"CycloneDX {stmt.predicate.get('specVersion')}, "
            f"{plural(len(stmt.predicate.get('components') or []), 'component')}"
        )
    if kind == "provenance":
        definition = stmt.predicate.get("buildDefinition") or {}
        builder = (definition.get("internalParameters") or {}).get("builder") or {}
        source = (definition.get("externalParameters") or {}).get("source") or {}
        commit = f"commit {str(source['commit'])[:12]}" if source.get("commit") else "no commit (built outside git)"
        commit += " with uncommitted changes" if source.get("dirty") else ""
        return f"SLSA v1, {builder.get('name')} {builder.get('version')}, {commit}"
    return "image signature"


def _norm_repo(url: str | None) -> str:
    # One repository, one name: https://host/org/repo.git, git@host:org/repo and git+https://host/org/repo agree.
    return (repository_uri(url) or (url or "").strip().removesuffix("/").removesuffix(".git")).lower()
