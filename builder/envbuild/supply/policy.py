"""Whose signatures count, and what must be attached: the trust policy ``verify``, ``rebuild`` and ``vendor`` apply.

A policy comes from a TOML file (``--policy``: ``[[signers]]``, ``require``, ``builder``,
``source-repository``) plus the signers given on the command line (``--key``,
``--certificate-identity`` with ``--certificate-oidc-issuer``). :mod:`envbuild.supply.verify`
checks images against it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from envbuild.errors import SpecError
from envbuild.fsutil import read_limited
from envbuild.supply.attest import KINDS
from envbuild.supply.signing.keys import KEY_LIMIT, key_hint, load_public_key
from envbuild.tomlread import Table

POLICY_KEYS = ("signers", "require", "builder", "source-repository")
SIGNER_KEYS = ("key", "identity", "issuer")
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
POLICY_LIMIT = 1024 * 1024  # a policy is a few lines: the cap keeps --policy /dev/zero from reading forever


@dataclass(frozen=True, kw_only=True)
class TrustedKey:
    """A public key whose signatures count, and where it came from (for reports)."""

    source: str
    public_key: ec.EllipticCurvePublicKey

    @property
    def hint(self) -> str:
        """The key's hint, as bundles name it."""
        return key_hint(self.public_key)


@dataclass(frozen=True, kw_only=True)
class TrustedIdentity:
    """A keyless signer whose signatures count: the certificate's identity and its OIDC issuer."""

    identity: str
    issuer: str


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Who may sign, and what must be attached and signed."""

    keys: tuple[TrustedKey, ...] = ()
    identities: tuple[TrustedIdentity, ...] = ()
    require: tuple[str, ...] = KINDS
    builder: str | None = None
    source_repository: str | None = None
    validate_sbom: bool = False  # the full CycloneDX JSON schema check, not only the structure

    def with_signers(self, keys: tuple[TrustedKey, ...], identities: tuple[TrustedIdentity, ...]) -> Policy:
        """This policy with more trusted signers (those given on the command line)."""
        return replace(self, keys=self.keys + keys, identities=self.identities + identities)


def load_policy(path: Path) -> Policy:
    """Read a policy file (TOML); every mistake names the file, the key and the fix."""
    text = read_limited(path, limit=POLICY_LIMIT, what="the policy")
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})", hint="save it as UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}", hint="fix the syntax at the position shown") from exc
    except RecursionError as exc:
        raise SpecError(f"{path}: not valid TOML: nested too deeply", hint="a policy is a flat table") from exc
    table = Table(data, file=path, path="", allowed=POLICY_KEYS)
    keys: list[TrustedKey] = []
    identities: list[TrustedIdentity] = []
    for signer in table.tables("signers", SIGNER_KEYS):
        key = signer.text("key", example="release.pub")
        identity = signer.text("identity", example="https://github.com/org/repo/.github/workflows/release.yml@...")
        issuer = signer.text("issuer", example=GITHUB_ISSUER)
        if key and (identity or issuer):
            signer.fail("key", "a signer is a key or a keyless identity, not both", "split it into two [[signers]]")
        if key:
            keys.append(read_trusted_key((path.parent / key).resolve()))
        elif identity and issuer:
            identities.append(TrustedIdentity(identity=identity, issuer=issuer))
        else:
            signer.fail(
                "identity" if issuer else "issuer" if identity else "key",
                "missing: a signer needs a key file, or an identity and its OIDC issuer",
                f'write key = "release.pub", or identity = "..." with issuer = "{GITHUB_ISSUER}"',
            )
    require = table.strings("require", example='"signature", "sbom", "provenance"')
    if table.has("require") and not require:
        # An empty list would verify an unsigned image: every requirement trivially met.
        table.fail("require", "is empty: nothing would be checked", 'require at least "signature"')
    for name in require:
        if name not in KINDS:
            table.fail("require", f"unknown attestation {name!r}", f"choose from {', '.join(KINDS)}")
    return Policy(
        keys=tuple(keys),
        identities=tuple(identities),
        require=require if table.has("require") else KINDS,
        builder=table.text("builder", example="buildah"),
        source_repository=table.text("source-repository", example="https://github.com/org/repo"),
    )


def policy_from(
    *, keys: tuple[Path, ...], identity: str | None, issuer: str | None, policy_file: Path | None
) -> Policy:
    """The policy a command line states: a policy file, plus keys and a keyless identity given as options."""
    if bool(identity) != bool(issuer):
        raise SpecError(
            "--certificate-identity and --certificate-oidc-issuer go together",
            hint="give both: who signed, and which OIDC issuer vouched for them",
        )
    identities = (TrustedIdentity(identity=identity, issuer=issuer),) if identity and issuer else ()
    base = load_policy(policy_file) if policy_file else Policy()
    policy = base.with_signers(tuple(read_trusted_key(k) for k in keys), identities)
    require_signers(policy)  # verify, rebuild and vendor all need one: say so before the network
    return policy


def require_signers(policy: Policy) -> None:
    """Refuse a policy that trusts nobody: nothing could ever verify under it."""
    if not policy.keys and not policy.identities:
        raise SpecError(
            "no trusted signer: nothing could verify",
            hint="give --key PUBLIC.pem, or --certificate-identity with --certificate-oidc-issuer, or a policy "
            "with [[signers]]",
        )


def read_trusted_key(path: Path) -> TrustedKey:
    """A public key file (PEM) as a trusted signer."""
    pem = read_limited(path, limit=KEY_LIMIT, what="the public key")
    return TrustedKey(source=str(path), public_key=load_public_key(pem, source=str(path)))
