"""keygen, signer choice, keyless failures offline, and verify policies: clear errors, no secrets shown."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from envbuild.errors import UsageError
from envbuild.supply.policy import load_policy
from envbuild.supply.signing.keys import load_private_key
from envbuild.supply.signing.signer import KeylessSigner, KeylessSigningError, KeySigner, signer_from_options

# Environment variables through which sigstore's `id` package finds ambient OIDC credentials.
AMBIENT = ("GITHUB_ACTIONS", "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "GITLAB_CI", "BUILDKITE")


def test_keygen_with_password_from_env(
    tmp_path: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVBUILD_SIGNING_KEY_PASSWORD", "s3cret-pw")
    result = cli("--json", "keygen", "-o", tmp_path)
    assert result.code == 0, result.err
    private, public = tmp_path / "envbuild.key", tmp_path / "envbuild.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in private.read_bytes()
    assert b"BEGIN PUBLIC KEY" in public.read_bytes()
    load_private_key(private.read_bytes(), b"s3cret-pw")
    assert "s3cret-pw" not in result.out + result.err

    again = cli("keygen", "-o", tmp_path)
    assert again.code == 2 and "already exists" in again.err


def test_keygen_needs_a_password_or_no_password(
    tmp_path: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENVBUILD_SIGNING_KEY_PASSWORD", raising=False)
    refused = cli("keygen", "-o", tmp_path)  # stdin is not a terminal under pytest
    assert refused.code == 2 and "--no-password" in refused.err
    plain = cli("keygen", "-o", tmp_path, "--no-password", "--name", "ci")
    assert plain.code == 0 and b"BEGIN PRIVATE KEY" in (tmp_path / "ci.key").read_bytes()


def test_signer_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENVBUILD_SIGNING_KEY", raising=False)
    with pytest.raises(UsageError, match="exclude each other"):
        signer_from_options(key_file=tmp_path / "k", keyless=True, identity_token=None)
    with pytest.raises(UsageError, match="--identity-token is for keyless signing"):
        signer_from_options(key_file=None, keyless=False, identity_token="t")
    with pytest.raises(UsageError, match="nothing to sign with") as caught:
        signer_from_options(key_file=None, keyless=False, identity_token=None)
    assert "ENVBUILD_SIGNING_KEY" in (caught.value.hint or "") and "envbuild keygen" in (caught.value.hint or "")
    assert isinstance(signer_from_options(key_file=None, keyless=True, identity_token=None), KeylessSigner)


def test_key_from_environment(cli: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("keygen", "-o", tmp_path, "--no-password").code == 0
    monkeypatch.setenv("ENVBUILD_SIGNING_KEY", (tmp_path / "envbuild.key").read_text())
    monkeypatch.delenv("ENVBUILD_SIGNING_KEY_PASSWORD", raising=False)
    signer = signer_from_options(key_file=None, keyless=False, identity_token=None)
    assert isinstance(signer, KeySigner)


def test_keyless_without_identity_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in AMBIENT:
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(KeylessSigningError) as caught:
        KeylessSigner().sign(b"{}")
    assert "no identity" in caught.value.message and "id-token: write" in (caught.value.hint or "")


def test_keyless_with_a_malformed_token_never_echoes_it() -> None:
    token = "eyJhbGciOiJub25lIn0.not-a-real-token-value.x"
    with pytest.raises(KeylessSigningError) as caught:
        KeylessSigner(token).sign(b"{}")
    assert "identity token cannot be used" in caught.value.message
    assert token not in str(caught.value) and "not-a-real-token-value" not in (caught.value.hint or "")


def test_image_signing_options_need_sign_and_a_good_key(
    tmp_path: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    unused = cli("-C", tmp_path, "image", "--keyless")
    assert unused.code == 2 and "need --sign" in unused.err
    monkeypatch.setenv("ENVBUILD_SIGNING_KEY_PASSWORD", "pw-one")
    assert cli("keygen", "-o", tmp_path).code == 0
    monkeypatch.setenv("ENVBUILD_SIGNING_KEY_PASSWORD", "pw-two")
    # The key is read before the spec and before any build: a wrong password costs nothing.
    wrong = cli("-C", tmp_path, "image", "--sign", "--key", tmp_path / "envbuild.key")
    assert wrong.code == 2 and "wrong password" in wrong.err and "pw-two" not in wrong.err


def test_verify_needs_identity_and_issuer_together(cli: Callable[..., Any]) -> None:
    result = cli("verify", "127.0.0.1:9/app@sha256:" + "0" * 64, "--certificate-identity", "me")
    assert result.code == 2 and "go together" in result.err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[signers]]\nkey = "a.pub"\nidentity = "me"\n', "signers[0].key: a signer is a key or a keyless identity"),
        ('[[signers]]\nidentity = "me"\n', "signers[0].issuer: missing"),
        ('require = ["sbom", "vex"]\n', "require: unknown attestation 'vex'"),
        ('[[signers]]\nkey = "missing.pub"\n', "cannot read the public key"),
        ("require = [\n", "not valid TOML"),
        ('builders = "buildah"\n', "builders: unknown key"),
    ],
)
def test_bad_policies(tmp_path: Path, text: str, message: str) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError) as caught:
        load_policy(policy)
    assert message in caught.value.message


def test_policy_defaults_and_signers(tmp_path: Path, cli: Callable[..., Any]) -> None:
    assert cli("keygen", "-o", tmp_path, "--no-password").code == 0
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[[signers]]\nkey = "envbuild.pub"\n\n[[signers]]\nidentity = "https://github.com/o/r/.github/workflows/'
        'release.yml@refs/tags/v1"\nissuer = "https://token.actions.githubusercontent.com"\n',
        encoding="utf-8",
    )
    loaded = load_policy(policy)
    assert len(loaded.keys) == 1 and loaded.identities[0].identity.endswith("@refs/tags/v1")
    assert loaded.require == ("signature", "sbom", "provenance") and loaded.builder is None


def test_sbom_attach_needs_a_registry_image(tmp_path: Path, cli: Callable[..., Any]) -> None:
    result = cli("-C", tmp_path, "sbom", "cpu-infer", "--attach")
    assert result.code == 2 and "--attach needs an image in a registry" in result.err
