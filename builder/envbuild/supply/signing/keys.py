"""ECDSA P-256 signing keys: made, written, read from files or the environment, and named by a hint.

Keys are plain PKCS#8 (private) and SubjectPublicKeyInfo (public) PEM, the formats openssl and
every crypto library read. The public half is what ``cosign verify --key`` takes; the private
half is not cosign's own encrypted format (``ENCRYPTED SIGSTORE PRIVATE KEY``), which only cosign
reads, so envbuild says so instead of failing obscurely when it is handed one.

:func:`key_hint` names a public key the way cosign and sigstore-go do in a bundle's
``verificationMaterial.publicKey.hint``: the standard base64 of the SHA-256 of the key's DER
SubjectPublicKeyInfo (cosign ``internal/key/svkeypair.go``, sigstore-go ``pkg/sign/keys.go``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from envbuild.errors import UsageError
from envbuild.fsutil import atomic_write, cannot_write

KEY_ENV = "ENVBUILD_SIGNING_KEY"
PASSWORD_ENV = "ENVBUILD_SIGNING_KEY_PASSWORD"
# A key pair's base name: no path separators, no leading dot (no ../../x, no hidden files).
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
KEY_LIMIT = 64 * 1024  # a PEM key is a few hundred bytes; the cap keeps --key /dev/zero from reading forever

_ENCRYPTED_PKCS8 = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
_COSIGN_MARKERS = (b"ENCRYPTED SIGSTORE PRIVATE KEY", b"ENCRYPTED COSIGN PRIVATE KEY")
_KEY_FORMAT_HINT = (
    "envbuild reads ECDSA P-256 keys as PKCS#8 PEM ('BEGIN PRIVATE KEY' or 'BEGIN ENCRYPTED PRIVATE KEY'); "
    "make one with envbuild's key generation or `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`"
)


class SigningKeyError(UsageError):
    """A signing key cannot be read or used: wrong password, wrong format, wrong curve. Exit 2."""


@dataclass(frozen=True, kw_only=True)
class KeyPair:
    """A P-256 key pair as PEM bytes: the private key (encrypted when made with a password) and the public key."""

    private_pem: bytes
    public_pem: bytes
    encrypted: bool


@dataclass(frozen=True, kw_only=True)
class KeyFiles:
    """Where :func:`write_keypair` put the two halves of a key pair."""

    private: Path
    public: Path


def generate_keypair(password: bytes | None) -> KeyPair:
    """Make a fresh ECDSA P-256 key pair; the private key is encrypted with ``password`` when one is given."""
    if password is not None and not password:
        raise SigningKeyError(
            "an empty password cannot encrypt a signing key",
            hint="give a non-empty password, or none at all for an unencrypted key",
        )
    key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return KeyPair(private_pem=private_pem, public_pem=public_pem(key.public_key()), encrypted=password is not None)


def public_pem(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of ``public_key`` (``BEGIN PUBLIC KEY``), as cosign and openssl read it."""
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(
    pem: bytes, password: bytes | None, *, source: str = "the signing key"
) -> ec.EllipticCurvePrivateKey:
    """Read a PKCS#8 PEM P-256 private key; every failure is a :class:`SigningKeyError` naming ``source``."""
    if any(marker in pem for marker in _COSIGN_MARKERS):
        raise SigningKeyError(
            f"{source} is in cosign's own encrypted key format, which envbuild does not read",
            hint=_KEY_FORMAT_HINT,
        )
    encrypted = _ENCRYPTED_PKCS8 in pem
    if encrypted and not password:
        raise SigningKeyError(
            f"{source} is encrypted and no password was given",
            hint=f"set {PASSWORD_ENV} (or pass the password) to decrypt it",
        )
    if not encrypted and password:
        raise SigningKeyError(
            f"a password was given but {source} is not encrypted",
            hint=f"unset {PASSWORD_ENV}, or use the encrypted key file",
        )
    try:
        key = serialization.load_pem_private_key(pem, password if encrypted else None)
    except ValueError as exc:
        if encrypted:
            # cryptography raises the same ValueError for a wrong password and a corrupt
            # encrypted blob; a wrong password is by far the likelier, so name it.
            raise SigningKeyError(
                f"wrong password for {source}",
                hint=f"check {PASSWORD_ENV}; the key itself may also be damaged",
            ) from exc
        raise SigningKeyError(f"{source} is not a readable PEM private key", hint=_KEY_FORMAT_HINT) from exc
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(f"{source} cannot be read: {exc}", hint=_KEY_FORMAT_HINT) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SigningKeyError(f"{source} holds a key of type {_kind(key)}, not ECDSA P-256", hint=_KEY_FORMAT_HINT)
    _require_p256(key.curve, source)
    return key


def load_public_key(pem: bytes, *, source: str = "the public key") -> ec.EllipticCurvePublicKey:
    """Read a SubjectPublicKeyInfo PEM P-256 public key; failures are :class:`SigningKeyError` naming ``source``."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(
            f"{source} is not a readable PEM public key",
            hint="expected a 'BEGIN PUBLIC KEY' PEM file, such as the .pub written next to the signing key",
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SigningKeyError(f"{source} holds a key of type {_kind(key)}, not ECDSA P-256", hint=_KEY_FORMAT_HINT)
    _require_p256(key.curve, source)
    return key


def key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    """cosign's name for ``public_key``: standard base64 of SHA-256 over its DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


def write_keypair(directory: Path, name: str, keypair: KeyPair, *, overwrite: bool = False) -> KeyFiles:
    """Write ``<name>.key`` (mode 0600) and ``<name>.pub`` into ``directory``, each atomically.

    An existing key is never replaced unless ``overwrite`` is set: losing a signing key
    orphans every signature made with it.
    """
    if not _KEY_NAME.fullmatch(name):
        raise UsageError(
            f"the key name {name!r} is not a plain file name",
            hint="use letters, digits, '.', '_' and '-', not starting with a dot; choose the directory with -o",
        )
    files = KeyFiles(private=directory / f"{name}.key", public=directory / f"{name}.pub")
    if not overwrite:
        for path in (files.private, files.public):
            if path.exists():
                raise SigningKeyError(
                    f"{path} already exists",
                    hint="move it away first, or overwrite it deliberately",
                )
    _write_secret(files.private, keypair.private_pem)
    atomic_write(files.public, keypair.public_pem)
    return files


def private_key_from_env(
    var: str = KEY_ENV,
    password_var: str = PASSWORD_ENV,
    *,
    environ: Mapping[str, str] | None = None,
) -> ec.EllipticCurvePrivateKey:
    """Read the PEM private key held in environment variable ``var``, decrypted with ``password_var`` if set.

    CI systems hand secrets over as variables; the key's PEM text is the variable's value.
    An empty password variable counts as unset, since CI often defines every variable.
    """
    env = os.environ if environ is None else environ
    value = env.get(var, "")
    if not value.strip():
        raise SigningKeyError(
            f"no signing key: {var} is not set",
            hint=f"put the PEM text of the private key in {var}, or give a key file",
        )
    password = env.get(password_var, "")
    # The messages name the variables, never their values: both are secrets.
    return load_private_key(
        value.encode("utf-8"),
        password.encode("utf-8") if password else None,
        source=f"the signing key in {var}",
    )


def _require_p256(curve: ec.EllipticCurve, source: str) -> None:
    """Refuse keys on any curve but P-256, naming the curve found."""
    if not isinstance(curve, ec.SECP256R1):
        raise SigningKeyError(
            f"{source} is on curve {curve.name}; envbuild signs with P-256 (secp256r1) only",
            hint="make a P-256 key: envbuild's bundles name ECDSA P-256 with SHA-256, as cosign's defaults do",
        )


def _kind(key: object) -> str:
    """A key's type for messages: ``RSA``, ``Ed25519``, ``DSA``..."""
    return type(key).__name__.lstrip("_").replace("PrivateKey", "").replace("PublicKey", "")


def _write_secret(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by its owner only from the first byte.

    Not :func:`envbuild.fsutil.atomic_write`: that makes the file 0644 before the rename, so
    the key would be world-readable at its final path until a later chmod. mkstemp creates the
    temporary file 0600 and it keeps that mode through the rename.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # -o under a file, or a read-only place
        raise cannot_write(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
