"""Unit tests for envbuild.supply.signing: keys, DSSE, in-toto statements and Sigstore bundles.

Signatures are also checked by openssl, so the tests do not only trust envbuild's own
verifier, and a real keyless bundle from the public Sigstore instance is verified offline.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from envbuild.errors import EXIT_FAILURE, EXIT_USAGE
from envbuild.supply.signing.bundle import (
    BUNDLE_MEDIA_TYPE,
    BundleError,
    KeylessVerificationError,
    SubjectMismatchError,
    bundle_json,
    key_bundle,
    load_bundle,
    verify_key_bundle,
    verify_keyless_bundle,
)
from envbuild.supply.signing.dsse import (
    IN_TOTO_PAYLOAD_TYPE,
    Envelope,
    Signature,
    SignatureError,
    Statement,
    pae,
    sign_envelope,
    statement,
    verify_envelope,
)
from envbuild.supply.signing.keys import (
    SigningKeyError,
    generate_keypair,
    key_hint,
    load_private_key,
    load_public_key,
    private_key_from_env,
    public_pem,
    write_keypair,
)
from support import paths
from support.tools import require_tool

ASSETS = paths.ASSETS / "sigstore"
KEYLESS_BUNDLE = ASSETS / "dsse_v001_bundle.sigstore.json"
KEYLESS_IDENTITY = "https://github.com/prefix-dev/sigstore-example/.github/workflows/action.yaml@refs/heads/main"
KEYLESS_ISSUER = "https://token.actions.githubusercontent.com"
KEYLESS_SUBJECT = "3862a3677d33a45134a2ce3452b23f8f7459fe581cefbc3818272648cd987cfb"

IMAGE_DIGEST = "sha256:" + hashlib.sha256(b"an image manifest").hexdigest()
OTHER_DIGEST = "sha256:" + hashlib.sha256(b"another image manifest").hexdigest()
PREDICATE_TYPE = "https://envbuild.dev/build/v1"


@pytest.fixture(scope="module")
def private_key() -> ec.EllipticCurvePrivateKey:
    """One P-256 signing key for the module (key generation is cheap, but one key reads clearer)."""
    return load_private_key(generate_keypair(None).private_pem, None)


def signed_statement(key: ec.EllipticCurvePrivateKey, digest: str = IMAGE_DIGEST) -> Envelope:
    """A DSSE envelope around an in-toto statement about ``digest``."""
    payload = statement("registry.example/app", digest, PREDICATE_TYPE, {"builder": "envbuild"})
    return sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, key)


def openssl(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    """Run openssl with an argument list; the caller checks the exit code."""
    return subprocess.run([require_tool("openssl"), *map(str, args)], capture_output=True, check=False)


# --- keys -----------------------------------------------------------------------------------


def test_keypair_round_trip_with_password() -> None:
    """An encrypted PKCS#8 key loads with its password and matches its public key."""
    pair = generate_keypair(b"correct horse")
    assert pair.encrypted
    assert pair.private_pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert pair.public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    key = load_private_key(pair.private_pem, b"correct horse")
    assert isinstance(key.curve, ec.SECP256R1)
    assert public_pem(key.public_key()) == pair.public_pem
    assert public_pem(load_public_key(pair.public_pem)) == pair.public_pem


def test_keypair_round_trip_without_password() -> None:
    """Without a password the private key is plain PKCS#8."""
    pair = generate_keypair(None)
    assert not pair.encrypted
    assert pair.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_pem(load_private_key(pair.private_pem, None).public_key()) == pair.public_pem


def test_empty_password_is_refused() -> None:
    """An empty password is a usage error rather than a silently unencrypted key."""
    with pytest.raises(SigningKeyError, match="empty password"):
        generate_keypair(b"")


def test_wrong_password_is_a_clear_error() -> None:
    """A wrong password gives SigningKeyError 'wrong password for the signing key', exit 2."""
    pair = generate_keypair(b"right")
    with pytest.raises(SigningKeyError) as caught:
        load_private_key(pair.private_pem, b"wrong")
    assert str(caught.value) == "wrong password for the signing key"
    assert caught.value.exit_code == EXIT_USAGE
    assert caught.value.hint


def test_missing_and_surplus_passwords() -> None:
    """An encrypted key without a password, and a password for a plain key, are both explained."""
    with pytest.raises(SigningKeyError, match="encrypted and no password"):
        load_private_key(generate_keypair(b"pw").private_pem, None)
    with pytest.raises(SigningKeyError, match="not encrypted"):
        load_private_key(generate_keypair(None).private_pem, b"pw")


def test_other_curve_is_named() -> None:
    """A P-384 key is refused with the curve's name, private and public alike."""
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(SigningKeyError, match="secp384r1"):
        load_private_key(pem, None)
    with pytest.raises(SigningKeyError, match="secp384r1"):
        load_public_key(public_pem(key.public_key()))


def test_rsa_key_is_named() -> None:
    """An RSA key is refused as RSA, not with a traceback."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(SigningKeyError, match="RSA"):
        load_private_key(pem, None)


def test_unreadable_keys() -> None:
    """Garbage and cosign's own key format are reported as such."""
    with pytest.raises(SigningKeyError, match="not a readable PEM private key"):
        load_private_key(b"not a key", None)
    cosign_key = b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    with pytest.raises(SigningKeyError, match="cosign's own encrypted key format"):
        load_private_key(cosign_key, b"pw")
    with pytest.raises(SigningKeyError, match="not a readable PEM public key"):
        load_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


def test_key_hint_matches_openssl(tmp_path: Path, private_key: ec.EllipticCurvePrivateKey) -> None:
    """The hint is base64(sha256(DER SubjectPublicKeyInfo)), computed here from openssl's DER."""
    pub = tmp_path / "key.pub"
    pub.write_bytes(public_pem(private_key.public_key()))
    der = openssl("pkey", "-pubin", "-in", pub, "-outform", "DER")
    assert der.returncode == 0, der.stderr
    assert key_hint(private_key.public_key()) == base64.b64encode(hashlib.sha256(der.stdout).digest()).decode()


def test_openssl_reads_encrypted_key(tmp_path: Path) -> None:
    """openssl decrypts the password-protected PKCS#8 key and derives the same public key."""
    pair = generate_keypair(b"pass phrase")
    (tmp_path / "key.pem").write_bytes(pair.private_pem)
    out = openssl("pkey", "-in", tmp_path / "key.pem", "-passin", "pass:pass phrase", "-pubout")
    assert out.returncode == 0, out.stderr
    assert out.stdout == pair.public_pem
    assert openssl("pkey", "-in", tmp_path / "key.pem", "-passin", "pass:wrong", "-pubout").returncode != 0


def test_write_keypair_modes_and_no_overwrite(tmp_path: Path) -> None:
    """The private key file is 0600, the public one readable; an existing key is not replaced."""
    pair = generate_keypair(b"pw")
    files = write_keypair(tmp_path / "keys", "envbuild", pair)
    assert files.private == tmp_path / "keys" / "envbuild.key"
    assert stat.S_IMODE(files.private.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.public.stat().st_mode) == 0o644
    assert files.private.read_bytes() == pair.private_pem
    assert files.public.read_bytes() == pair.public_pem
    assert not [p.name for p in files.private.parent.iterdir() if p.name.endswith(".tmp")]

    with pytest.raises(SigningKeyError, match="already exists"):
        write_keypair(tmp_path / "keys", "envbuild", generate_keypair(None))
    assert files.private.read_bytes() == pair.private_pem

    other = generate_keypair(None)
    write_keypair(tmp_path / "keys", "envbuild", other, overwrite=True)
    assert files.private.read_bytes() == other.private_pem
    assert stat.S_IMODE(files.private.stat().st_mode) == 0o600


def test_private_key_from_env() -> None:
    """The key's PEM comes from a variable; an empty password variable counts as unset."""
    pair = generate_keypair(b"s3cret-pass")
    key = private_key_from_env(
        environ={"ENVBUILD_SIGNING_KEY": pair.private_pem.decode(), "ENVBUILD_SIGNING_KEY_PASSWORD": "s3cret-pass"}
    )
    assert public_pem(key.public_key()) == pair.public_pem

    plain = generate_keypair(None)
    key = private_key_from_env("MY_KEY", "MY_PASS", environ={"MY_KEY": plain.private_pem.decode(), "MY_PASS": ""})
    assert public_pem(key.public_key()) == plain.public_pem

    with pytest.raises(SigningKeyError, match="ENVBUILD_SIGNING_KEY is not set"):
        private_key_from_env(environ={})


def test_env_wrong_password_names_variable_not_value() -> None:
    """A wrong password from the environment names the variable and never echoes the secret."""
    pair = generate_keypair(b"right-password")
    with pytest.raises(SigningKeyError) as caught:
        private_key_from_env(
            environ={"ENVBUILD_SIGNING_KEY": pair.private_pem.decode(), "ENVBUILD_SIGNING_KEY_PASSWORD": "guess-123"}
        )
    text = f"{caught.value} {caught.value.hint}"
    assert "wrong password for the signing key in ENVBUILD_SIGNING_KEY" in text
    assert "guess-123" not in text
    assert "PRIVATE KEY" not in text


# --- DSSE -----------------------------------------------------------------------------------


def test_pae_matches_the_dsse_spec_example() -> None:
    """PAE of the example in DSSE protocol.md, and byte (not character) lengths."""
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("t/\u00e9", b"") == b"DSSEv1 4 t/\xc3\xa9 0 "


def test_envelope_json_round_trip(private_key: ec.EllipticCurvePrivateKey) -> None:
    """to_json/from_json keep every field; base64 is the standard alphabet; empty keyid is omitted."""
    envelope = signed_statement(private_key)
    doc = json.loads(envelope.to_json())
    assert set(doc) == {"payload", "payloadType", "signatures"}
    assert doc["signatures"] == [{"sig": base64.b64encode(envelope.signatures[0].sig).decode()}]
    assert base64.b64decode(doc["payload"], validate=True) == envelope.payload
    assert Envelope.from_json(envelope.to_json()) == envelope

    with_keyid = Envelope(payload=b"\xfb\xff", payload_type="t", signatures=(Signature(sig=b"\xfe\xff", keyid="k1"),))
    doc = json.loads(with_keyid.to_json())
    assert doc["signatures"] == [{"keyid": "k1", "sig": "/v8="}]
    assert doc["payload"] == "+/8="
    assert Envelope.from_json(with_keyid.to_json()) == with_keyid


def test_envelope_reads_url_safe_base64() -> None:
    """DSSE allows the URL-safe alphabet; unpadded input is read too."""
    doc = {"payload": "-_8", "payloadType": "t", "signatures": [{"sig": "_v8", "keyid": ""}]}
    envelope = Envelope.from_dict(doc)
    assert envelope.payload == b"\xfb\xff"
    assert envelope.signatures == (Signature(sig=b"\xfe\xff"),)


def test_malformed_envelopes() -> None:
    """Missing fields and bad base64 raise SignatureError, not KeyError or binascii.Error."""
    with pytest.raises(SignatureError, match="not a DSSE envelope"):
        Envelope.from_dict({"payload": "", "signatures": []})
    with pytest.raises(SignatureError, match="not valid base64"):
        Envelope.from_dict({"payload": "!!", "payloadType": "t", "signatures": []})
    with pytest.raises(SignatureError, match="not JSON"):
        Envelope.from_json(b"{")


def test_sign_verify_round_trip(private_key: ec.EllipticCurvePrivateKey) -> None:
    """A signed envelope verifies and gives back its payload."""
    envelope = signed_statement(private_key)
    assert verify_envelope(envelope, private_key.public_key(), payload_type=IN_TOTO_PAYLOAD_TYPE) == envelope.payload


def test_tampered_payload_fails(private_key: ec.EllipticCurvePrivateKey) -> None:
    """Changing one payload byte, or the payload type, breaks the signature."""
    envelope = signed_statement(private_key)
    tampered = Envelope(
        payload=envelope.payload.replace(b"envbuild", b"evilbuild"),
        payload_type=envelope.payload_type,
        signatures=envelope.signatures,
    )
    with pytest.raises(SignatureError, match="does not verify"):
        verify_envelope(tampered, private_key.public_key())
    retyped = Envelope(payload=envelope.payload, payload_type="application/json", signatures=envelope.signatures)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_envelope(retyped, private_key.public_key())
    with pytest.raises(SignatureError, match=re.escape("not 'application/vnd.in-toto")):
        verify_envelope(retyped, private_key.public_key(), payload_type=IN_TOTO_PAYLOAD_TYPE)


def test_signature_by_another_key_fails(private_key: ec.EllipticCurvePrivateKey) -> None:
    """An envelope signed by one key does not verify with another."""
    other = load_private_key(generate_keypair(None).private_pem, None)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_envelope(signed_statement(other), private_key.public_key())
    with pytest.raises(SignatureError, match="no signatures"):
        verify_envelope(Envelope(payload=b"x", payload_type="t", signatures=()), private_key.public_key())


def test_openssl_verifies_our_signature(tmp_path: Path, private_key: ec.EllipticCurvePrivateKey) -> None:
    """openssl checks the DER signature over the PAE bytes: an independent implementation agrees."""
    envelope = signed_statement(private_key)
    (tmp_path / "pub.pem").write_bytes(public_pem(private_key.public_key()))
    (tmp_path / "pae.bin").write_bytes(pae(envelope.payload_type, envelope.payload))
    (tmp_path / "sig.der").write_bytes(envelope.signatures[0].sig)
    ok = openssl(
        "dgst", "-sha256", "-verify", tmp_path / "pub.pem", "-signature", tmp_path / "sig.der", tmp_path / "pae.bin"
    )
    assert ok.returncode == 0, ok.stderr
    assert b"Verified OK" in ok.stdout

    # And openssl rejects it over the payload alone: the signature covers the PAE, not the body.
    (tmp_path / "body.bin").write_bytes(envelope.payload)
    bad = openssl(
        "dgst", "-sha256", "-verify", tmp_path / "pub.pem", "-signature", tmp_path / "sig.der", tmp_path / "body.bin"
    )
    assert bad.returncode != 0


def test_we_verify_an_openssl_signature(tmp_path: Path) -> None:
    """A signature made by openssl over the PAE verifies with envbuild: the PAE is the same bytes."""
    pair = generate_keypair(None)
    (tmp_path / "key.pem").write_bytes(pair.private_pem)
    payload = statement("x", IMAGE_DIGEST, PREDICATE_TYPE, {})
    (tmp_path / "pae.bin").write_bytes(pae(IN_TOTO_PAYLOAD_TYPE, payload))
    made = openssl("dgst", "-sha256", "-sign", tmp_path / "key.pem", "-out", tmp_path / "sig.der", tmp_path / "pae.bin")
    assert made.returncode == 0, made.stderr
    envelope = Envelope(
        payload=payload,
        payload_type=IN_TOTO_PAYLOAD_TYPE,
        signatures=(Signature(sig=(tmp_path / "sig.der").read_bytes()),),
    )
    assert verify_envelope(envelope, load_public_key(pair.public_pem)) == payload


def test_statement_is_canonical() -> None:
    """The statement is in-toto v1 with sorted keys and no whitespace, byte for byte."""
    digest = "ab" * 32
    got = statement("img", f"sha256:{digest.upper()}", "https://p/v1", {"z": 1, "a": [True, None]})
    assert got == (
        b'{"_type":"https://in-toto.io/Statement/v1","predicate":{"a":[true,null],"z":1},'
        b'"predicateType":"https://p/v1","subject":[{"digest":{"sha256":"' + digest.encode() + b'"},"name":"img"}]}'
    )
    parsed = Statement.parse(got)
    assert parsed.sha256_digests() == (digest,)
    assert parsed.predicate_type == "https://p/v1"
    with pytest.raises(SignatureError, match="not a SHA-256 digest"):
        statement("img", "sha256:1234", "https://p/v1", {})


def test_statement_parse_rejects_other_payloads() -> None:
    """A payload that is not an in-toto statement is refused with its _type."""
    with pytest.raises(SignatureError, match="not an in-toto statement"):
        Statement.parse(b'{"_type":"https://example/other"}')
    with pytest.raises(SignatureError, match="non-empty 'subject'"):
        Statement.parse(b'{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"p"}')


# --- key-based bundles ----------------------------------------------------------------------


def test_bundle_shape_matches_cosign(private_key: ec.EllipticCurvePrivateKey) -> None:
    """Exactly the keys cosign v3 writes for a key-signed DSSE bundle (plus an empty tlogEntries)."""
    envelope = signed_statement(private_key)
    bundle = key_bundle(envelope, private_key.public_key())
    assert list(bundle) == ["mediaType", "verificationMaterial", "dsseEnvelope"]
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json" == BUNDLE_MEDIA_TYPE
    assert bundle["verificationMaterial"] == {
        "publicKey": {"hint": key_hint(private_key.public_key())},
        "tlogEntries": [],
    }
    assert set(bundle["dsseEnvelope"]) == {"payload", "payloadType", "signatures"}
    assert bundle["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"
    assert bundle["dsseEnvelope"]["signatures"] == [{"sig": base64.b64encode(envelope.signatures[0].sig).decode()}]
    assert base64.b64decode(bundle["dsseEnvelope"]["payload"]) == envelope.payload

    text = bundle_json(bundle)
    assert b" " not in text and text.startswith(b'{"dsseEnvelope":')
    assert load_bundle(text) == bundle


def test_key_bundle_verifies(private_key: ec.EllipticCurvePrivateKey) -> None:
    """A bundle verifies with its key and the right subject, and returns the statement."""
    bundle = load_bundle(bundle_json(key_bundle(signed_statement(private_key), private_key.public_key())))
    result = verify_key_bundle(bundle, private_key.public_key(), expected_subject_digest=IMAGE_DIGEST)
    assert result.predicate_type == PREDICATE_TYPE
    assert result.subjects[0].name == "registry.example/app"
    assert result.sha256_digests() == (IMAGE_DIGEST.removeprefix("sha256:"),)
    assert verify_key_bundle(bundle, private_key.public_key()) == result


def test_key_bundle_subject_mismatch(private_key: ec.EllipticCurvePrivateKey) -> None:
    """A good signature for another image is refused, naming the digest it was made for."""
    bundle = key_bundle(signed_statement(private_key, OTHER_DIGEST), private_key.public_key())
    with pytest.raises(SubjectMismatchError) as caught:
        verify_key_bundle(bundle, private_key.public_key(), expected_subject_digest=IMAGE_DIGEST)
    assert str(caught.value) == f"signed for another image: {OTHER_DIGEST}"
    assert caught.value.hint is not None and IMAGE_DIGEST in caught.value.hint
    assert caught.value.exit_code == EXIT_FAILURE


def test_key_bundle_other_key(private_key: ec.EllipticCurvePrivateKey) -> None:
    """A bundle from another key fails on the hint; a forged hint still fails on the signature."""
    other = load_private_key(generate_keypair(None).private_pem, None)
    bundle = key_bundle(signed_statement(other), other.public_key())
    with pytest.raises(SignatureError, match="signed by another key"):
        verify_key_bundle(bundle, private_key.public_key())
    bundle["verificationMaterial"]["publicKey"]["hint"] = key_hint(private_key.public_key())
    with pytest.raises(SignatureError, match="does not verify"):
        verify_key_bundle(bundle, private_key.public_key())


def test_key_bundle_tampered_payload(private_key: ec.EllipticCurvePrivateKey) -> None:
    """Re-encoding a changed statement into the bundle breaks the signature."""
    bundle = key_bundle(signed_statement(private_key, OTHER_DIGEST), private_key.public_key())
    forged = statement("registry.example/app", IMAGE_DIGEST, PREDICATE_TYPE, {"builder": "envbuild"})
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(forged).decode()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_key_bundle(bundle, private_key.public_key(), expected_subject_digest=IMAGE_DIGEST)


def test_key_bundle_structure_errors(private_key: ec.EllipticCurvePrivateKey) -> None:
    """Wrong media type, a certificate bundle, a message signature and a non-in-toto payload."""
    pub = private_key.public_key()
    good = key_bundle(signed_statement(private_key), pub)

    wrong_type = {**good, "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1"}
    with pytest.raises(BundleError, match="unsupported bundle media type"):
        verify_key_bundle(wrong_type, pub)

    keyless = {**good, "verificationMaterial": {"certificate": {"rawBytes": "AA=="}, "tlogEntries": []}}
    with pytest.raises(BundleError, match="carries a certificate"):
        verify_key_bundle(keyless, pub)

    message: dict[str, Any] = {k: v for k, v in good.items() if k != "dsseEnvelope"}
    message["messageSignature"] = {"signature": "AA=="}
    with pytest.raises(BundleError, match="plain message signature"):
        verify_key_bundle(message, pub)

    other_type = key_bundle(sign_envelope(b"{}", "application/vnd.other+json", private_key), pub)
    with pytest.raises(SignatureError, match=re.escape("not 'application/vnd.in-toto")):
        verify_key_bundle(other_type, pub)

    with pytest.raises(BundleError, match="not JSON"):
        load_bundle(b"[")


# --- keyless bundles (real, from the public Sigstore instance) --------------------------------


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty HOME and XDG dirs, to show keyless verification writes no TUF cache."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    return home


def test_keyless_bundle_verifies(isolated_home: Path) -> None:
    """The real bundle verifies offline for its identity and issuer and yields its statement."""
    result = verify_keyless_bundle(
        KEYLESS_BUNDLE.read_bytes(),
        identity=KEYLESS_IDENTITY,
        issuer=KEYLESS_ISSUER,
        expected_subject_digest=KEYLESS_SUBJECT,
    )
    assert result.subjects[0].name == "signed-package-2.1.0-hb0f4dca_0.conda"
    assert result.sha256_digests() == (KEYLESS_SUBJECT,)
    assert result.predicate_type == "https://schemas.conda.org/attestations-publish-1.schema.json"
    assert list(isolated_home.iterdir()) == []


def test_keyless_wrong_identity() -> None:
    """Another identity fails, and the message names the identity that was expected."""
    wrong = "https://github.com/someone-else/repo/.github/workflows/release.yml@refs/heads/main"
    with pytest.raises(KeylessVerificationError) as caught:
        verify_keyless_bundle(KEYLESS_BUNDLE.read_bytes(), identity=wrong, issuer=KEYLESS_ISSUER)
    assert wrong in str(caught.value)
    assert "SANs do not match" in str(caught.value)
    assert caught.value.exit_code == EXIT_FAILURE


def test_keyless_wrong_issuer() -> None:
    """The right identity from another issuer fails, naming the issuer."""
    with pytest.raises(KeylessVerificationError) as caught:
        verify_keyless_bundle(
            KEYLESS_BUNDLE.read_bytes(), identity=KEYLESS_IDENTITY, issuer="https://accounts.google.com"
        )
    assert "https://accounts.google.com" in str(caught.value)
    assert "OIDCIssuer" in str(caught.value)


def test_keyless_subject_mismatch() -> None:
    """A valid keyless signature for another digest is a SubjectMismatchError."""
    with pytest.raises(SubjectMismatchError, match=f"signed for another image: sha256:{KEYLESS_SUBJECT}"):
        verify_keyless_bundle(
            KEYLESS_BUNDLE.read_bytes(),
            identity=KEYLESS_IDENTITY,
            issuer=KEYLESS_ISSUER,
            expected_subject_digest=IMAGE_DIGEST,
        )


def test_keyless_tampered_payload() -> None:
    """Changing the signed statement inside the real bundle fails verification."""
    bundle = load_bundle(KEYLESS_BUNDLE.read_bytes())
    forged = copy.deepcopy(bundle)
    payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    payload["subject"][0]["digest"]["sha256"] = IMAGE_DIGEST.removeprefix("sha256:")
    forged["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    with pytest.raises(KeylessVerificationError):
        verify_keyless_bundle(
            json.dumps(forged).encode(),
            identity=KEYLESS_IDENTITY,
            issuer=KEYLESS_ISSUER,
            expected_subject_digest=IMAGE_DIGEST,
        )


def test_keyless_refuses_key_bundles_and_garbage(private_key: ec.EllipticCurvePrivateKey) -> None:
    """A key-based bundle or non-JSON input is a BundleError, not a sigstore traceback."""
    key_based = bundle_json(key_bundle(signed_statement(private_key), private_key.public_key()))
    with pytest.raises(BundleError, match="signed with a key"):
        verify_keyless_bundle(key_based, identity=KEYLESS_IDENTITY, issuer=KEYLESS_ISSUER)
    with pytest.raises(BundleError, match="not JSON"):
        verify_keyless_bundle(b"nope", identity=KEYLESS_IDENTITY, issuer=KEYLESS_ISSUER)
