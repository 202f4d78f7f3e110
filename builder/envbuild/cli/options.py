"""Command-line options shared by several commands, each defined once with its ENVBUILD_* default."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from envbuild.errors import UsageError
from envbuild.registry.options import RegistryOptions

if TYPE_CHECKING:
    from envbuild.lock.spec import Role, Spec
    from envbuild.lock.variants import Variant
    from envbuild.supply.policy import Policy
    from envbuild.supply.signing.signer import Signer

F = TypeVar("F", bound=Callable[..., Any])

insecure = click.option(
    "--insecure",
    is_flag=True,
    envvar="ENVBUILD_REGISTRY_INSECURE",
    show_envvar=True,
    help="Talk plain HTTP to the registry (loopback registries in tests and CI).",
)
ca_file = click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="ENVBUILD_REGISTRY_CA_FILE",
    show_envvar=True,
    help="Trust this CA certificate (PEM) for the registry's TLS.",
)
variant_names = click.option(
    "--variant", "variants", multiple=True, metavar="NAME", help="Build this variant (repeatable), e.g. gpu-infer."
)
gpu = click.option("--gpu", is_flag=True, help="The GPU variants instead of the CPU ones.")
role = click.option("--role", type=click.Choice(["train", "infer"]), help="Only this role.")
all_variants = click.option("--all", "all_variants", is_flag=True, help="Every variant.")


@dataclass(frozen=True, kw_only=True)
class VariantChoice:
    """Which variants the command line asks for: names (--variant), or filters (--gpu, --role, --all)."""

    names: tuple[str, ...] = ()
    gpu: bool = False
    role: Role | None = None
    all: bool = False

    def __post_init__(self) -> None:
        if self.names and (self.gpu or self.role or self.all):
            raise UsageError(
                "--variant names the variants: --gpu, --role and --all choose them instead",
                hint="pass --variant NAME, or --gpu / --role / --all",
            )

    def select(self, spec: Spec) -> tuple[Variant, ...]:
        """The chosen variants of ``spec`` (the CPU ones when nothing is asked); none is exit 2."""
        from envbuild.lock.variants import select

        if self.names:
            return select(spec, self.names)
        return select(spec, accelerator="all" if self.all else "gpu" if self.gpu else "cpu", role=self.role)


def variant_options(command: F) -> F:
    """--variant, --gpu, --role and --all, given to the command as ``variants: VariantChoice``."""

    @functools.wraps(command)
    def with_variants(
        *args: Any, variants: tuple[str, ...], gpu: bool, role: Role | None, all_variants: bool, **kwargs: Any
    ) -> Any:
        choice = VariantChoice(names=variants, gpu=gpu, role=role, all=all_variants)
        return command(*args, variants=choice, **kwargs)

    return variant_names(gpu(role(all_variants(cast(F, with_variants)))))


# SOURCE_DATE_EPOCH becomes every file's mtime and the image's created time: tar and OCI need
# 0 <= epoch < 2**32 here, and a value outside failed only deep inside buildah.
EPOCH = click.IntRange(0, 2**32 - 1)
platforms = click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH",
    help="Build only this platform of the spec's (repeatable), each as its own image with no index; "
    "default: every one, and for several an image index per variant.",
)


def _endpoint(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``PLATFORM=URL`` pairs: each platform once, each URL a Docker daemon's (tcp://, unix:// or ssh://)."""
    pairs: dict[str, str] = {}
    for value in values:
        platform, sep, url = value.partition("=")
        if not sep or "://" not in url or url.split("://", 1)[0] not in ("tcp", "unix", "ssh") or not platform:
            raise click.BadParameter(
                f"{value!r} is not PLATFORM=URL; write e.g. linux/arm64=tcp://arm-builder:2375 "
                "(a Docker daemon's tcp://, unix:// or ssh:// address)"
            )
        if platform in pairs:
            raise click.BadParameter(f"{platform} is given two endpoints; give each platform one")
        pairs[platform] = url
    return tuple(pairs.items())


endpoints = click.option(
    "--endpoint",
    "endpoints",
    multiple=True,
    metavar="PLATFORM=URL",
    callback=_endpoint,
    envvar="ENVBUILD_ENDPOINTS",
    show_envvar=True,
    help="Build PLATFORM on the Docker daemon at URL (with --builder docker; repeatable), e.g. "
    "linux/arm64=tcp://arm-builder:2375 for a native arm64 machine. Default: DOCKER_HOST's daemon.",
)
jobs = click.option(
    "--jobs", "-j", type=click.IntRange(1, 32), default=4, show_default=True, envvar="ENVBUILD_JOBS", show_envvar=True,
    help="Blobs transferred in parallel.",
)  # fmt: skip


def registry_options(command: F) -> F:
    """--insecure and --ca-file, given to the command as one value: ``registry: RegistryOptions``."""

    @functools.wraps(command)
    def with_registry(*args: Any, insecure: bool, ca_file: Path | None, **kwargs: Any) -> Any:
        return command(*args, registry=RegistryOptions(insecure=insecure, ca_file=ca_file), **kwargs)

    return insecure(ca_file(cast(F, with_registry)))


key_file = click.option(
    "--key", "key_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="ENVBUILD_SIGNING_KEY_FILE", show_envvar=True,
    help="Sign with this ECDSA P-256 private key (PEM); its password from ENVBUILD_SIGNING_KEY_PASSWORD. "
    "Without --key or --keyless, the key's PEM text is read from ENVBUILD_SIGNING_KEY.",
)  # fmt: skip
keyless = click.option(
    "--keyless", is_flag=True, envvar="ENVBUILD_KEYLESS", show_envvar=True,
    help="Sign keyless with Sigstore: a Fulcio certificate for your OIDC identity, logged in Rekor.",
)  # fmt: skip
identity_token = click.option(
    "--identity-token", metavar="TOKEN", envvar="ENVBUILD_IDENTITY_TOKEN", show_envvar=True,
    help="The OIDC token for --keyless (default: ambient credentials, e.g. GitHub Actions with id-token: write).",
)  # fmt: skip
source_repository = click.option(
    "--source-repository", metavar="URL", envvar="ENVBUILD_SOURCE_REPOSITORY", show_envvar=True,
    help="The source repository named in provenance, as a git remote or https URL (default: GitHub Actions' "
    "repository, else the current branch's remote or origin; a local path names none).",
)  # fmt: skip
allow_dirty = click.option(
    "--allow-dirty", is_flag=True, envvar="ENVBUILD_ALLOW_DIRTY", show_envvar=True,
    help="Build even when the spec, lockfiles or image files have uncommitted changes; the build record, "
    "provenance and revision label (<commit>-dirty) then say so.",
)  # fmt: skip
disk_check = click.option(
    "--disk-check/--no-disk-check", default=True, envvar="ENVBUILD_DISK_CHECK", show_envvar=True, show_default=True,
    help="Refuse a build whose estimated scratch space exceeds the free space of .envbuild/work (docs/disk.md).",
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class SigningChoice:
    """How the command line asks to sign: --key, --keyless, --identity-token (or ENVBUILD_SIGNING_KEY)."""

    key_file: Path | None = None
    keyless: bool = False
    identity_token: str | None = None

    @property
    def given(self) -> bool:
        """Whether any signing option was given."""
        return bool(self.key_file or self.keyless or self.identity_token)

    def signer(self) -> Signer:
        """The signer chosen (a wrong key password or a missing key is an error here)."""
        from envbuild.supply.signing.signer import signer_from_options  # loads cryptography

        return signer_from_options(key_file=self.key_file, keyless=self.keyless, identity_token=self.identity_token)


def signing_options(command: F) -> F:
    """--key, --keyless and --identity-token, given to the command as ``signing: SigningChoice``."""

    @functools.wraps(command)
    def with_signing(
        *args: Any, key_file: Path | None, keyless: bool, identity_token: str | None, **kwargs: Any
    ) -> Any:
        choice = SigningChoice(key_file=key_file, keyless=keyless, identity_token=identity_token)
        return command(*args, signing=choice, **kwargs)

    return key_file(keyless(identity_token(cast(F, with_signing))))


trusted_keys = click.option(
    "--key", "keys", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="ENVBUILD_VERIFY_KEY", show_envvar=True, help="Trust signatures by this public key (PEM; repeatable).",
)  # fmt: skip
certificate_identity = click.option(
    "--certificate-identity", metavar="ID", help="Trust keyless signatures of this identity (the certificate's SAN)."
)
certificate_oidc_issuer = click.option(
    "--certificate-oidc-issuer", metavar="URL", help="...issued through this OIDC issuer."
)
policy_file = click.option(
    "--policy", "policy_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="ENVBUILD_VERIFY_POLICY", show_envvar=True,
    help="A policy file: signers, required attestations, builder, source repository.",
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class TrustChoice:
    """Whose signatures count, as the command line says: --key, --certificate-identity/-oidc-issuer, --policy."""

    keys: tuple[Path, ...] = ()
    identity: str | None = None
    issuer: str | None = None
    policy_file: Path | None = None

    def policy(self) -> Policy:
        """The policy these options state (a policy file that does not parse is an error here)."""
        from envbuild.supply.policy import policy_from

        return policy_from(keys=self.keys, identity=self.identity, issuer=self.issuer, policy_file=self.policy_file)


def trust_options(command: F) -> F:
    """--key, --certificate-identity, --certificate-oidc-issuer and --policy, given as ``trust: TrustChoice``."""

    @functools.wraps(command)
    def with_trust(
        *args: Any,
        keys: tuple[Path, ...],
        certificate_identity: str | None,
        certificate_oidc_issuer: str | None,
        policy_file: Path | None,
        **kwargs: Any,
    ) -> Any:
        choice = TrustChoice(
            keys=keys, identity=certificate_identity, issuer=certificate_oidc_issuer, policy_file=policy_file
        )
        return command(*args, trust=choice, **kwargs)

    return trusted_keys(certificate_identity(certificate_oidc_issuer(policy_file(cast(F, with_trust)))))
