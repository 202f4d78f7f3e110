"""Who signs: a key (offline) or a keyless Sigstore identity, behind one small interface.

A :class:`Signer` turns an in-toto statement into a Sigstore bundle (v0.3, DSSE). The key
signer needs nothing but the key; the keyless signer trades an OIDC identity token for a
short-lived Fulcio certificate and records the signature in Rekor (sigstore-python), so it
needs the public Sigstore instance — in GitHub Actions the token is the job's own
(``id-token: write``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from envbuild.errors import EnvbuildError, UsageError
from envbuild.fsutil import read_limited
from envbuild.supply.signing.bundle import bundle_json, key_bundle
from envbuild.supply.signing.dsse import IN_TOTO_PAYLOAD_TYPE, sign_envelope
from envbuild.supply.signing.keys import (
    KEY_ENV,
    KEY_LIMIT,
    PASSWORD_ENV,
    key_hint,
    load_private_key,
    private_key_from_env,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec
    from sigstore.sign import Signer as SigstoreSigner

TOKEN_ENV = "ENVBUILD_IDENTITY_TOKEN"


class KeylessSigningError(EnvbuildError):
    """Keyless signing failed: no identity, or Fulcio/Rekor unreachable or refusing. Exit 1."""


class Signer(Protocol):
    """Signs in-toto statements into Sigstore bundles."""

    @property
    def description(self) -> str:
        """Who signs, for messages and reports (a key hint, or "keyless")."""
        ...

    def sign(self, statement: bytes) -> bytes:
        """The Sigstore bundle (JSON bytes) of ``statement`` signed as a DSSE in-toto envelope."""
        ...


class KeySigner:
    """Signs with an ECDSA P-256 key; bundles carry the key's hint, as cosign v3 writes them."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey):
        self._key = private_key

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half, which verifies this signer's bundles."""
        return self._key.public_key()

    @property
    def description(self) -> str:
        return f"key {key_hint(self._key.public_key())}"

    def sign(self, statement: bytes) -> bytes:
        envelope = sign_envelope(statement, IN_TOTO_PAYLOAD_TYPE, self._key)
        return bundle_json(key_bundle(envelope, self._key.public_key()))


class KeylessSigner:
    """Signs with a Fulcio certificate for an OIDC identity; every signature goes to Rekor.

    One certificate and ephemeral key serve every statement of one run (sigstore's signer cache).
    """

    def __init__(self, identity_token: str | None = None):
        self._token = identity_token
        self._signer: SigstoreSigner | None = None

    @property
    def description(self) -> str:
        return "keyless (Sigstore)"

    def sign(self, statement: bytes) -> bytes:
        from sigstore.dsse import Statement
        from sigstore.errors import Error as SigstoreError

        signer = self._open()
        try:
            bundle = signer.sign_dsse(Statement(statement))
        except (SigstoreError, OSError, ValueError) as exc:
            raise KeylessSigningError(
                f"keyless signing failed: {exc}",
                hint="Fulcio and Rekor (the public Sigstore instance) must be reachable; sign with a key otherwise",
            ) from exc
        return bundle.to_json().encode("utf-8")

    def _open(self) -> SigstoreSigner:
        if self._signer is not None:
            return self._signer
        from sigstore.errors import Error as SigstoreError
        from sigstore.models import ClientTrustConfig
        from sigstore.oidc import IdentityToken, detect_credential
        from sigstore.sign import SigningContext

        try:
            raw = self._token or detect_credential()
        except SigstoreError as exc:
            raise KeylessSigningError(f"no identity for keyless signing: {exc}") from exc
        if not raw:
            raise KeylessSigningError(
                "no identity for keyless signing: no identity token was given and none is available here",
                hint=f"in GitHub Actions grant the job 'id-token: write'; elsewhere pass --identity-token or set "
                f"{TOKEN_ENV}, or sign with a key",
            )
        try:
            token = IdentityToken(raw)
        except (SigstoreError, ValueError) as exc:
            # The message never quotes the token: it is a bearer credential.
            raise KeylessSigningError(
                f"the identity token cannot be used: {exc}",
                hint="pass a fresh OIDC token with audience 'sigstore' (tokens expire within minutes)",
            ) from exc
        try:
            context = SigningContext.from_trust_config(ClientTrustConfig.production())
        except (SigstoreError, OSError, ValueError) as exc:
            raise KeylessSigningError(
                f"cannot fetch Sigstore's trust configuration: {exc}",
                hint="keyless signing needs the public Sigstore instance; sign with a key on machines that cannot "
                "reach it",
            ) from exc
        with context.signer(token, cache=True) as signer:
            self._signer = signer
        return signer


def signer_from_options(*, key_file: Path | None, keyless: bool, identity_token: str | None) -> Signer:
    """The signer chosen on the command line: a key file, keyless, or the key in ``ENVBUILD_SIGNING_KEY``."""
    if keyless and key_file is not None:
        raise UsageError("--keyless and --key exclude each other", hint="sign with a key or keyless, not both")
    if keyless:
        return KeylessSigner(identity_token)
    if identity_token:
        raise UsageError("--identity-token is for keyless signing", hint="add --keyless, or drop the token")
    password = os.environ.get(PASSWORD_ENV, "")
    if key_file is not None:
        pem = read_limited(key_file, limit=KEY_LIMIT, what="the signing key")
        return KeySigner(load_private_key(pem, password.encode() if password else None, source=str(key_file)))
    if os.environ.get(KEY_ENV, "").strip():
        return KeySigner(private_key_from_env())
    raise UsageError(
        "nothing to sign with",
        hint=f"give --key FILE (see 'envbuild keygen'), put the key's PEM in {KEY_ENV}, or use --keyless",
    )
