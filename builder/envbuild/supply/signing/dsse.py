"""DSSE envelopes signed with ECDSA P-256, and the in-toto statements they carry.

DSSE (secure-systems-lab/dsse, ``protocol.md`` and ``envelope.md`` v1.0.0) signs
``PAE(payloadType, payload)`` rather than the payload alone, so a signature cannot be
replayed under another payload type. The JSON envelope holds the payload and each signature
as base64; producers may use the standard or the URL-safe alphabet, so both are read. A
signature's ``keyid`` is an unauthenticated hint: it never decides whether a signature counts.

in-toto Statement v1 (in-toto/attestation ``spec/v1/statement.md``) is the payload envbuild
signs: ``_type``, ``subject`` (name + digest set), ``predicateType`` and ``predicate``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from envbuild.errors import EnvbuildError

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
# cosign wrote v0.1 statements before v1 existed; their layout is the same for what we read.
STATEMENT_TYPES = frozenset({STATEMENT_V1, "https://in-toto.io/Statement/v0.1"})

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class SignatureError(EnvbuildError):
    """A signature, envelope or statement does not verify or cannot be read. Exit 1."""


@dataclass(frozen=True, kw_only=True)
class Signature:
    """One DSSE signature: a DER ECDSA signature over the PAE, and the optional ``keyid`` hint."""

    sig: bytes
    keyid: str = ""


@dataclass(frozen=True, kw_only=True)
class Envelope:
    """A DSSE envelope: the payload, its type and the signatures over ``pae(payload_type, payload)``."""

    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]

    def to_dict(self) -> dict[str, Any]:
        """The DSSE JSON envelope as a dict, base64 in the standard alphabet; an empty ``keyid`` is left out."""
        return {
            "payload": _b64(self.payload),
            "payloadType": self.payload_type,
            "signatures": [_signature_dict(s) for s in self.signatures],
        }

    def to_json(self) -> bytes:
        """The DSSE JSON envelope as canonical bytes (sorted keys, no spaces)."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Envelope:
        """Read a DSSE JSON envelope already parsed into a mapping; bad fields raise :class:`SignatureError`."""
        payload = data.get("payload")
        payload_type = data.get("payloadType")
        signatures = data.get("signatures")
        if not isinstance(payload, str) or not isinstance(payload_type, str) or not isinstance(signatures, list):
            raise SignatureError(
                "not a DSSE envelope: it needs string 'payload' and 'payloadType' and a list 'signatures'",
            )
        parsed: list[Signature] = []
        for i, entry in enumerate(signatures):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("sig"), str):
                raise SignatureError(f"DSSE signature {i} has no string 'sig'")
            keyid = entry.get("keyid") or ""
            if not isinstance(keyid, str):
                raise SignatureError(f"DSSE signature {i} has a non-string 'keyid'")
            parsed.append(Signature(sig=_unb64(entry["sig"], f"signature {i}"), keyid=keyid))
        return cls(payload=_unb64(payload, "payload"), payload_type=payload_type, signatures=tuple(parsed))

    @classmethod
    def from_json(cls, data: bytes | str) -> Envelope:
        """Read a DSSE JSON envelope from its text."""
        try:
            parsed = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SignatureError(f"DSSE envelope is not JSON: {exc}") from exc
        if not isinstance(parsed, Mapping):
            raise SignatureError("DSSE envelope is not a JSON object")
        return cls.from_dict(parsed)


@dataclass(frozen=True, kw_only=True)
class Subject:
    """One subject of an in-toto statement: a name and its digests by algorithm (``{"sha256": hex}``)."""

    name: str
    digest: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class Statement:
    """A parsed in-toto statement, with the exact payload bytes it was read from."""

    type: str
    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: Mapping[str, Any]
    raw: bytes

    @classmethod
    def parse(cls, payload: bytes) -> Statement:
        """Read an in-toto statement (v1 or v0.1); anything else raises :class:`SignatureError`."""
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SignatureError(f"the signed payload is not JSON: {exc}") from exc
        found = data.get("_type") if isinstance(data, dict) else type(data).__name__
        if not isinstance(found, str) or found not in STATEMENT_TYPES:
            raise SignatureError(f"the signed payload is not an in-toto statement (_type {found!r})")
        subjects_raw = data.get("subject")
        predicate_type = data.get("predicateType")
        predicate = data.get("predicate") or {}
        if not isinstance(subjects_raw, list) or not subjects_raw or not isinstance(predicate_type, str):
            raise SignatureError("the in-toto statement needs a non-empty 'subject' list and a 'predicateType'")
        if not isinstance(predicate, dict):
            raise SignatureError("the in-toto statement's 'predicate' is not an object")
        subjects: list[Subject] = []
        for i, entry in enumerate(subjects_raw):
            digest = entry.get("digest") if isinstance(entry, dict) else None
            if not isinstance(digest, dict) or not all(isinstance(v, str) for v in digest.values()):
                raise SignatureError(f"subject {i} of the in-toto statement has no digest set")
            name = entry.get("name", "")
            subjects.append(Subject(name=name if isinstance(name, str) else "", digest=dict(digest)))
        return cls(
            type=data["_type"],
            subjects=tuple(subjects),
            predicate_type=predicate_type,
            predicate=predicate,
            raw=payload,
        )

    def sha256_digests(self) -> tuple[str, ...]:
        """The ``sha256`` digest (lowercase hex) of every subject that has one, in order."""
        return tuple(s.digest["sha256"].lower() for s in self.subjects if "sha256" in s.digest)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``.

    LEN is the ASCII decimal byte length, so a non-ASCII payload type counts its UTF-8 bytes.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def sign_envelope(
    payload: bytes,
    payload_type: str,
    private_key: ec.EllipticCurvePrivateKey,
    keyid: str = "",
) -> Envelope:
    """Sign ``payload`` as a one-signature DSSE envelope: ECDSA with SHA-256 over the PAE, DER-encoded."""
    sig = private_key.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
    return Envelope(payload=payload, payload_type=payload_type, signatures=(Signature(sig=sig, keyid=keyid),))


def verify_envelope(
    envelope: Envelope,
    public_key: ec.EllipticCurvePublicKey,
    *,
    payload_type: str | None = None,
) -> bytes:
    """Return the payload if some signature in ``envelope`` verifies with ``public_key``; else :class:`SignatureError`.

    With ``payload_type`` the envelope must also carry exactly that type: the signature covers
    the type, but a verifier that does not look at it may misread a payload of another kind.
    """
    if payload_type is not None and envelope.payload_type != payload_type:
        raise SignatureError(
            f"the envelope carries {envelope.payload_type!r}, not {payload_type!r}",
        )
    if not envelope.signatures:
        raise SignatureError("the DSSE envelope has no signatures")
    message = pae(envelope.payload_type, envelope.payload)
    for signature in envelope.signatures:
        # keyid is an unauthenticated hint (DSSE protocol.md): every signature is tried.
        try:
            public_key.verify(signature.sig, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return envelope.payload
    raise SignatureError(
        "the signature does not verify with the given public key",
        hint="the payload was changed after signing, or it was signed with another key",
    )


def statement(
    subject_name: str,
    subject_digest_hex: str,
    predicate_type: str,
    predicate: Mapping[str, Any],
) -> bytes:
    """An in-toto Statement v1 about one subject, as canonical JSON bytes ready to sign.

    ``subject_digest_hex`` is the subject's SHA-256 in hex; a ``sha256:`` prefix is accepted,
    since image digests are written that way.
    """
    digest = normalize_sha256(subject_digest_hex)
    return canonical_json(
        {
            "_type": STATEMENT_V1,
            "subject": [{"name": subject_name, "digest": {"sha256": digest}}],
            "predicateType": predicate_type,
            "predicate": dict(predicate),
        }
    )


def normalize_sha256(digest: str) -> str:
    """``sha256:<hex>`` or ``<hex>`` as 64 lowercase hex characters; anything else is a :class:`SignatureError`."""
    value = digest.removeprefix("sha256:").lower()
    if not _SHA256_HEX.fullmatch(value):
        raise SignatureError(f"not a SHA-256 digest: {digest!r}", hint="expected sha256:<64 hex characters>")
    return value


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace, UTF-8: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _signature_dict(signature: Signature) -> dict[str, str]:
    """One DSSE signature as JSON; an empty keyid is omitted, which DSSE treats the same as empty."""
    out = {"sig": _b64(signature.sig)}
    if signature.keyid:
        out["keyid"] = signature.keyid
    return out


def _b64(data: bytes) -> str:
    """Standard base64 with padding, as protobuf JSON and cosign write it."""
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not, strictly; DSSE allows either alphabet."""
    padded = text + "=" * (-len(text) % 4)
    alphabet_safe = padded.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(alphabet_safe, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"the {what} in the DSSE envelope is not valid base64") from exc
