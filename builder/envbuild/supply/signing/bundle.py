"""Sigstore bundles (v0.3) around DSSE envelopes: made and checked with a key, or checked keyless.

A key-based bundle is laid out as cosign v3 writes one when it signs with ``--key`` and no
transparency log (cosign ``pkg/cosign/bundle/sign.go`` -> sigstore-go ``pkg/sign/signer.go``
``Bundle()`` -> ``protojson.Marshal``)::

    {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
     "verificationMaterial": {"publicKey": {"hint": "<base64 sha256 of the DER public key>"},
                              "tlogEntries": []},
     "dsseEnvelope": {"payload": "<base64>", "payloadType": "application/vnd.in-toto+json",
                      "signatures": [{"sig": "<base64 DER ECDSA>"}]}}

sigstore-go's ``DSSEData.Bundle`` sets only ``sig`` on the signature, so protojson leaves the
empty ``keyid`` out; envbuild does the same. protojson also leaves out an empty
``tlogEntries``; envbuild writes ``[]`` because sigstore-python's bundle model requires the
field, and every protojson reader accepts an empty list.

Keyless bundles (a Fulcio certificate, a Rekor entry) are checked by sigstore-python against
the production trust root shipped inside the installed sigstore package, with no network:
the certificate chain, the transparency-log proof and the DSSE signature, then the signer's
identity and OIDC issuer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ec

from envbuild.supply.signing.dsse import (
    IN_TOTO_PAYLOAD_TYPE,
    Envelope,
    SignatureError,
    Statement,
    canonical_json,
    normalize_sha256,
    verify_envelope,
)
from envbuild.supply.signing.keys import key_hint

if TYPE_CHECKING:
    from sigstore.models import TrustedRoot

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
# The same version under its older spelling; sigstore-python and sigstore-go accept both.
_V03_MEDIA_TYPES = frozenset({BUNDLE_MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3"})


class BundleError(SignatureError):
    """A bundle is malformed or of a kind envbuild does not check here. Exit 1."""


class SubjectMismatchError(SignatureError):
    """A valid signature, but over another artifact than the one being verified. Exit 1."""


class KeylessVerificationError(SignatureError):
    """A keyless bundle failed verification: certificate, transparency log, signature or identity. Exit 1."""


def key_bundle(envelope: Envelope, public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """The Sigstore bundle v0.3 for a key-signed DSSE envelope, shaped as cosign v3 writes it."""
    return {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": key_hint(public_key)},
            "tlogEntries": [],
        },
        "dsseEnvelope": envelope.to_dict(),
    }


def bundle_json(bundle: Mapping[str, Any]) -> bytes:
    """A bundle as canonical JSON bytes (sorted keys, no whitespace)."""
    return canonical_json(bundle)


def load_bundle(data: bytes | str) -> dict[str, Any]:
    """Parse bundle JSON text into a dict; text that is not a JSON object raises :class:`BundleError`."""
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"the bundle is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise BundleError("the bundle is not a JSON object")
    return parsed


def verify_key_bundle(
    bundle: Mapping[str, Any],
    public_key: ec.EllipticCurvePublicKey,
    *,
    expected_subject_digest: str | None = None,
) -> Statement:
    """Check a key-based bundle against ``public_key`` and return the in-toto statement it signs.

    Checked: the v0.3 media type, that the bundle names this key (its hint), the DSSE
    signature, that the payload is an in-toto statement, and, when ``expected_subject_digest``
    (``sha256:<hex>``) is given, that some subject has exactly that SHA-256.
    """
    media_type = bundle.get("mediaType")
    if not isinstance(media_type, str) or media_type not in _V03_MEDIA_TYPES:
        raise BundleError(
            f"unsupported bundle media type {media_type!r}",
            hint=f"envbuild reads Sigstore bundles of type {BUNDLE_MEDIA_TYPE}",
        )
    material = bundle.get("verificationMaterial")
    if not isinstance(material, Mapping):
        raise BundleError("the bundle has no verificationMaterial")
    public_key_id = material.get("publicKey")
    if not isinstance(public_key_id, Mapping):
        raise BundleError(
            "the bundle was not signed with a key (it carries a certificate)",
            hint="verify it as a keyless signature, with the signer's identity and OIDC issuer",
        )
    expected_hint = key_hint(public_key)
    if public_key_id.get("hint") != expected_hint:
        raise SignatureError(
            f"the bundle was signed by another key (hint {public_key_id.get('hint')!r}, this key is {expected_hint!r})",
            hint="verify with the public key that belongs to the signing key",
        )
    envelope = envelope_of(bundle)
    payload = verify_envelope(envelope, public_key, payload_type=IN_TOTO_PAYLOAD_TYPE)
    result = Statement.parse(payload)
    if expected_subject_digest is not None:
        check_subject(result, expected_subject_digest)
    return result


def check_subject(stmt: Statement, expected_digest: str) -> None:
    """Raise :class:`SubjectMismatchError` unless some subject of ``stmt`` has SHA-256 ``expected_digest``."""
    expected = normalize_sha256(expected_digest)
    found = stmt.sha256_digests()
    if expected in found:
        return
    signed_for = ", ".join(f"sha256:{d}" for d in found) or "no sha256 subject"
    raise SubjectMismatchError(
        f"signed for another image: {signed_for}",
        hint=f"this signature does not cover sha256:{expected}; find the signature made for that digest",
    )


def verify_keyless_bundle(
    bundle_bytes: bytes,
    *,
    identity: str,
    issuer: str,
    expected_subject_digest: str | None = None,
    trusted_root: Path | None = None,
) -> Statement:
    """Verify a keyless (Fulcio + Rekor) DSSE bundle offline and return the in-toto statement it signs.

    ``identity`` must be one of the certificate's subject alternative names (an email, or a
    workflow URI such as ``https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1``)
    and ``issuer`` its OIDC issuer. ``trusted_root`` is a ``trusted_root.json``; without it the
    Sigstore production root embedded in the installed sigstore package is used.
    """
    # Imported here: sigstore pulls in pydantic, tuf and more, which key-based signing never needs.
    from sigstore.errors import Error as SigstoreError
    from sigstore.errors import VerificationError
    from sigstore.models import Bundle
    from sigstore.models import TrustedRoot as SigstoreTrustedRoot
    from sigstore.verify import Verifier
    from sigstore.verify.policy import Identity

    who = f"identity {identity!r} from issuer {issuer!r}"
    raw = load_bundle(bundle_bytes)
    material = raw.get("verificationMaterial")
    if isinstance(material, Mapping) and "publicKey" in material:
        raise BundleError(
            "the bundle was signed with a key, not keyless",
            hint="verify it with the signer's public key instead of an identity and issuer",
        )
    if "dsseEnvelope" not in raw:
        raise BundleError(
            "the keyless bundle signs a plain message, not a DSSE in-toto statement",
            hint="envbuild verifies DSSE attestations (what cosign v3 attaches to images)",
        )
    try:
        parsed = Bundle.from_json(bundle_bytes)
    except (SigstoreError, ValueError) as exc:
        raise BundleError(f"the keyless bundle cannot be read: {exc}") from exc
    try:
        root = SigstoreTrustedRoot.from_file(str(trusted_root)) if trusted_root else _embedded_production_root()
        verifier = Verifier(trusted_root=root)
        payload_type, payload = verifier.verify_dsse(parsed, Identity(identity=identity, issuer=issuer))
    except VerificationError as exc:
        raise KeylessVerificationError(
            f"keyless signature not valid for {who}: {exc}",
            hint="check the expected identity and issuer against the signing certificate",
        ) from exc
    except (SigstoreError, ValueError, OSError) as exc:
        raise KeylessVerificationError(f"keyless signature could not be checked for {who}: {exc}") from exc
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise BundleError(f"the keyless bundle carries {payload_type!r}, not an in-toto statement")
    result = Statement.parse(payload)
    if expected_subject_digest is not None:
        check_subject(result, expected_subject_digest)
    return result


def envelope_of(bundle: Mapping[str, Any]) -> Envelope:
    """The DSSE envelope of a bundle; a message-signature bundle is a :class:`BundleError`."""
    content = bundle.get("dsseEnvelope")
    if not isinstance(content, Mapping):
        kind = "a plain message signature" if "messageSignature" in bundle else "no signed content"
        raise BundleError(f"the bundle holds {kind}, not a DSSE envelope")
    return Envelope.from_dict(content)


def _embedded_production_root() -> TrustedRoot:
    """Sigstore's production trusted root as shipped in the installed sigstore package.

    ``Verifier.production(offline=True)`` would read it through the TUF cache in the user's
    home directory, which it first writes and which may hold an older root; reading the
    embedded copy directly touches no file outside the package (sigstore-python's own
    ``test_npm_intoto.py`` does the same). These names are internal to sigstore, which the
    lockfile pins.
    """
    from sigstore._internal.tuf import DEFAULT_TUF_URL
    from sigstore._utils import read_embedded
    from sigstore.models import TrustedRoot
    from sigstore_models.trustroot.v1 import TrustedRoot as TrustedRootModel

    return TrustedRoot(TrustedRootModel.from_json(read_embedded("trusted_root.json", DEFAULT_TUF_URL)))
